"""``CountingOpener``: a spy on how often the Kinetics data set opens and reads each video
(shared by tests/datasets/test_kinetics.py and tests/datasets/test_loader.py)."""
import stvit_video.datasets.kinetics as kinetics


class CountingOpener:
    """Replaces ``kinetics.open_video``: counts opens and frame reads per path."""

    def __init__(self, monkeypatch) -> None:
        self.opens: dict[str, int] = {}
        self.reads: dict[str, int] = {}
        real = kinetics.open_video

        def open_video(path, backend):
            self.opens[str(path)] = self.opens.get(str(path), 0) + 1
            video = real(path, backend)
            get_frames = video.get_frames

            def counted(indices):
                self.reads[str(path)] = self.reads.get(str(path), 0) + 1
                return get_frames(indices)

            video.get_frames = counted
            return video

        monkeypatch.setattr(kinetics, "open_video", open_video)
