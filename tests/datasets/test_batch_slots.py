"""Shared batch buffers the training workers reuse (DATA_LOADER.REUSE_BATCH_MEMORY)."""
import pytest
import torch

from stvit_video.datasets import construct_loader, set_loader_epoch
from stvit_video.datasets.batch_slots import BatchSlots
from stvit_video.datasets.loader import VideoLoader, collate_samples

SHAPE = (4, 8, 56, 56, 3)  # (B, T, H, W, C) of the small config's batches


def test_claim_release_and_reset():
    slots = BatchSlots(num_workers=2, slots=2, batch_shape=SHAPE)
    assert slots.nbytes == 2 * 2 * 4 * 8 * 56 * 56 * 3 and slots.frames.is_shared()
    a, view_a = slots.claim(1, SHAPE)
    b, view_b = slots.claim(1, SHAPE)
    assert (a, b) == (2, 3) and view_a.shape == SHAPE and view_a.data_ptr() == slots.frames[2].data_ptr()
    assert slots.claim(1, SHAPE) == (-1, None)  # worker 1's row is full: the caller allocates anew
    assert slots.claim(0, SHAPE)[0] == 0  # rows are per worker
    assert slots.claim(0, (2, *SHAPE[1:])) == (-1, None)  # another shape (a smaller last batch)
    slots.release(a)
    assert slots.claim(1, SHAPE)[0] == 2 and slots.held() == 3
    slots.reset()
    assert slots.held() == 0
    with pytest.raises(ValueError, match="needs >= 1 worker"):
        BatchSlots(0, 2, SHAPE)


def _epochs(cfg, epochs=2, loader=None):
    loader = loader or construct_loader(cfg, "train")
    batches = []
    for epoch in range(epochs):
        set_loader_epoch(loader, epoch)
        batches += list(loader)  # held all at once: a yielded batch must not alias a reused buffer
    return loader, batches


def _rows(videos, copies=2):
    return [(videos[n], i % 10) for i, n in enumerate(["lossless", "h264", "audio", "tiny"] * copies)]


def _count_slot_batches(monkeypatch) -> list[bool]:
    """One entry per batch that arrived in a buffer: whether it arrived on the main process's own
    mapping of the buffers (torch's storage cache), i.e. without a new mapping."""
    arrived = []
    real = VideoLoader._out_of_slot

    def spy(self, batch):
        arrived.append(batch.frames.untyped_storage().data_ptr() == self.slots.frames.untyped_storage().data_ptr())
        return real(self, batch)

    monkeypatch.setattr(VideoLoader, "_out_of_slot", spy)
    return arrived


def test_batches_through_reused_buffers_equal_new_segments_and_outlive_the_buffer(videos, small_cfg, write_lists,
                                                                                  monkeypatch):
    lists = write_lists(_rows(videos, copies=4))
    opts = ("DATA_LOADER.NUM_WORKERS", 1, "DATA_LOADER.PREFETCH_FACTOR", 1)
    arrived = _count_slot_batches(monkeypatch)
    reused, with_slots = _epochs(small_cfg(lists, *opts))
    plain, without = _epochs(small_cfg(lists, *opts, "DATA_LOADER.REUSE_BATCH_MEMORY", False))
    assert reused.slots is not None and reused.slots.slots == 3 and plain.slots is None
    # 8 batches through 3 buffers, all held by the test at the end: each buffer was reused
    assert len(with_slots) == len(without) == 8 and len(arrived) == 8 and all(arrived)
    pool = reused.slots.frames
    for a, b in zip(with_slots, without):
        assert torch.equal(a.frames, b.frames) and torch.equal(a.labels, b.labels) and a.slot == b.slot == -1
        assert a.frames.is_contiguous(memory_format=torch.channels_last_3d)
        start = a.frames.untyped_storage().data_ptr()
        assert not pool.data_ptr() <= start < pool.data_ptr() + pool.numel()  # copied out of the buffer
    assert reused.slots.held() == 0  # every buffer came back


def test_full_rows_fall_back_and_an_abandoned_epoch_gives_its_buffers_back(videos, small_cfg, write_lists,
                                                                           monkeypatch):
    lists = write_lists(_rows(videos))
    arrived = _count_slot_batches(monkeypatch)
    cfg = small_cfg(lists, "DATA_LOADER.NUM_WORKERS", 1, "DATA_LOADER.PREFETCH_FACTOR", 2)
    _, expected = _epochs(small_cfg(lists, "DATA_LOADER.NUM_WORKERS", 0))
    # one buffer for a worker that keeps two batches in flight: every other batch takes a new segment
    base = construct_loader(cfg, "train")
    tight = VideoLoader(base.dataset, slots=BatchSlots(1, 1, SHAPE), batch_size=base.batch_size,
                        sampler=base.sampler, num_workers=1, collate_fn=collate_samples, drop_last=True,
                        persistent_workers=True, prefetch_factor=2, worker_init_fn=base.worker_init_fn)
    set_loader_epoch(tight, 0)
    next(iter(tight))  # abandoned after one batch, with the next ones in flight
    _, batches = _epochs(cfg, loader=tight)
    assert [b.video_index.tolist() for b in batches] == [b.video_index.tolist() for b in expected]
    assert all(torch.equal(a.frames, b.frames) for a, b in zip(batches, expected))
    assert tight.slots.held() == 0 and 1 <= len(arrived) <= len(batches)


def test_only_persistent_training_workers_get_buffers(videos, small_cfg, write_lists):
    lists = write_lists(_rows(videos))
    assert construct_loader(small_cfg(lists, "DATA_LOADER.NUM_WORKERS", 0), "train").slots is None
    assert construct_loader(small_cfg(lists, "DATA_LOADER.NUM_WORKERS", 1, "DATA_LOADER.PERSISTENT_WORKERS",
                                      False), "train").slots is None
    assert construct_loader(small_cfg(lists, "DATA_LOADER.NUM_WORKERS", 1), "val").slots is None


def test_too_little_shared_memory_falls_back_with_one_warning(videos, small_cfg, write_lists, monkeypatch, caplog):
    import stvit_video.datasets.loader as loader_module

    def no_room(*args):
        raise RuntimeError("unable to write to file </torch_1_2_3>: No space left on device (28)")

    monkeypatch.setattr(loader_module, "BatchSlots", no_room)
    cfg = small_cfg(write_lists(_rows(videos)), "DATA_LOADER.NUM_WORKERS", 2)
    with caplog.at_level("WARNING", logger=loader_module.__name__):
        loader = construct_loader(cfg, "train")
    assert loader.slots is None and len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert "DATA_LOADER.REUSE_BATCH_MEMORY" in message and "No space left" in message and "--shm-size" in message
    assert "2 workers x 6 batches of 0.3 MiB (3.4 MiB)" in message


def test_buffers_work_with_spawned_workers(videos, small_cfg, write_lists):
    """Spawn (and forkserver, Python 3.14's default) pickle the buffers, state and lock into the
    workers instead of inheriting them; the batches still come back through the buffers, on the
    main process's own mapping."""
    lists = write_lists(_rows(videos))
    base = construct_loader(small_cfg(lists, "DATA_LOADER.NUM_WORKERS", 0), "train")
    set_loader_epoch(base, 0)
    expected = list(base)
    spawned = VideoLoader(base.dataset, slots=BatchSlots(1, 2, SHAPE, context="spawn"), batch_size=base.batch_size,
                          sampler=base.sampler, num_workers=1, collate_fn=collate_samples, drop_last=True,
                          persistent_workers=True, prefetch_factor=1, worker_init_fn=base.worker_init_fn,
                          multiprocessing_context="spawn")
    arrived = []
    real = spawned._out_of_slot
    spawned._out_of_slot = lambda batch: arrived.append(
        batch.frames.untyped_storage().data_ptr() == spawned.slots.frames.untyped_storage().data_ptr()) or real(batch)
    batches = list(spawned)
    assert len(batches) == len(expected) == 2 and arrived == [True, True]
    assert all(torch.equal(a.frames, b.frames) for a, b in zip(batches, expected))
