"""The numpy-backed video list: the same rows as a list of VideoRecord, and no private copy of the
list in forked loader workers."""
import pickle
import subprocess
import sys

import pytest

from stvit_video.datasets.kinetics import VideoClipDataset
from stvit_video.datasets.record_store import RecordStore
from stvit_video.datasets.video_list import VideoRecord, read_csv_list

ROWS = [VideoRecord("/data/k700/train/abseiling/a b c_000010_000020.mp4", 0),
        VideoRecord("/data/k700/train/playing guitar/é-ü_ß.mp4", 399),
        VideoRecord("relative/x.webm", 7)]


def test_the_store_returns_the_rows_of_the_list_it_was_made_from(tmp_path):
    store = RecordStore(ROWS)
    assert len(store) == 3 and list(store) == ROWS and store == ROWS and store[1] == ROWS[1]
    assert store[-1] == ROWS[-1] and store[0:2] == ROWS[0:2] and store[::-1] == ROWS[::-1]
    with pytest.raises(IndexError, match="row 3 of a list of 3 videos"):
        store[3]
    assert pickle.loads(pickle.dumps(store)) == store  # spawned workers get it pickled
    assert RecordStore(store) == store and RecordStore([]) == []
    # a SlowFast list with spaces in paths reads back the same through the store
    (tmp_path / "train.csv").write_text("videos/a b.mp4 2\nvideos/c.mp4 0\n")
    parsed = read_csv_list(tmp_path / "train.csv", num_classes=3)
    assert list(RecordStore(parsed)) == parsed and RecordStore(parsed)[0].path.endswith("videos/a b.mp4")


def test_the_dataset_keeps_its_rows_in_a_store():
    dataset = VideoClipDataset(ROWS, name="t", backend="pyav", sample_clip=None, transform=None,
                               retry=None, placeholder_shape=(3, 1, 1, 1))
    assert isinstance(dataset.videos, RecordStore) and list(dataset.videos) == ROWS


def test_forked_workers_do_not_copy_a_100k_row_store():
    """In a fresh process: one pass of 2 forked workers over 100k rows; each worker's private
    memory grows by the list it reads when the rows are Python objects, not with the store."""
    from stvit_video.bench.list_memory import private_mb

    if private_mb() < 0:
        pytest.skip("this kernel does not report private memory (/proc/self/smaps_rollup)")
    code = ("from stvit_video.bench.list_memory import worker_growth\n"
            "for s in ('list', 'store'): print(s, *worker_growth(100_000, s, workers=2)['growth_mb'])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    growth = {line.split()[0]: [float(x) for x in line.split()[1:]] for line in out.stdout.splitlines()}
    assert max(growth["store"]) < 5.0, growth
    assert min(growth["list"]) > max(growth["store"]) + 5.0, growth  # the test can see the difference
