"""DATA.GENERATE_IF_MISSING: a job writes the built-in mini-Kinetics through data_prep.api.

The real set (960 clips of 128x96) takes a minute; here generate and prepare_all are the API's
own functions with a tiny set (24 clips of 64x48, 8 frames) and one worker.
"""
import functools

import pytest
from fvcore.common.config import CfgNode

from data_prep import api
from data_prep.manifest import output_relpath
from data_prep.synthetic import CLASSES
from data_prep.verify import VerifyReport
from stvit_video.engine.builtin_data import ensure_builtin_data
from stvit_video.utils.errors import DataError


def _cfg(root, generate: str = "mini_kinetics") -> CfgNode:
    return CfgNode({"DATA": {"GENERATE_IF_MISSING": generate, "PATH_TO_DATA_DIR": str(root),
                             "TRAIN_JITTER_SCALES": [40, 48], "DECODING_BACKEND": "pyav"}})


@pytest.fixture
def tiny_api(monkeypatch):
    """api.generate and api.prepare_all at the tiny size; returns the prepare_all calls' summaries."""
    # 64x48: decord 0.6 cannot decode frames 48 px wide (see test_synthetic.py)
    monkeypatch.setattr(api, "generate", functools.partial(api.generate, per_class=1, size=(64, 48), frames=8,
                                                           fps=8, workers=1, progress=False))
    summaries = []
    prepare_all = api.prepare_all

    def tiny_prepare_all(*args, **kwargs):
        summaries.append(prepare_all(*args, **kwargs, workers=1, progress=False))
        return summaries[-1]

    monkeypatch.setattr(api, "prepare_all", tiny_prepare_all)
    return summaries


def test_generates_and_prepares_once(tmp_path, tiny_api):
    root = tmp_path / "mini"
    assert ensure_builtin_data(_cfg(root)) is True
    (summary,) = tiny_api
    assert summary.out == root and summary.verify.backend == "pyav"
    assert summary.counts["train"]["in_list"] == summary.counts["val"]["in_list"] == 8 and summary.usable == 24
    assert (root / "classnames.txt").read_text().splitlines() == list(CLASSES)
    assert (root / "source" / "annotations" / "train.csv").is_file()
    assert '"short_side": 48' in (root / "encoding.json").read_text()  # max(DATA.TRAIN_JITTER_SCALES)
    assert ensure_builtin_data(_cfg(root)) is False  # train.csv exists now: nothing to do
    assert len(tiny_api) == 1


def test_nothing_happens_when_not_asked(tmp_path):
    assert ensure_builtin_data(_cfg(tmp_path, generate="")) is False
    assert not any(tmp_path.iterdir())


def test_a_failed_step_is_a_data_error_naming_the_command_and_the_reason(tmp_path, monkeypatch):
    root = tmp_path / "mini"

    def full_disk(out, **kwargs):
        raise OSError(f"[Errno 28] No space left on device: '{out}'")

    monkeypatch.setattr(api, "generate", full_disk)
    with pytest.raises(DataError) as failed:
        ensure_builtin_data(_cfg(root))
    assert str(failed.value) == (f"DATA.GENERATE_IF_MISSING: python -m data_prep synthetic --out {root / 'source'} "
                                 f"--no-next-step failed: [Errno 28] No space left on device: '{root / 'source'}'")
    monkeypatch.setattr(api, "generate", lambda out, **kwargs: None)  # writes no annotations
    with pytest.raises(DataError, match=r"python -m data_prep all --annotations .* --short-side 48 --backend pyav "
                                        r"--no-next-step failed: .*annotation"):
        ensure_builtin_data(_cfg(root))


def test_empty_lists_fail_the_job_with_the_reason(tmp_path, monkeypatch, tiny_api):
    root = tmp_path / "mini"
    # every output fails verify: nothing left to train on
    monkeypatch.setattr(api, "verify_outputs", lambda rows, out, **kwargs: VerifyReport(
        len(rows), {output_relpath(row): "broken" for row in rows}))
    with pytest.raises(DataError, match=r"--no-next-step failed: no usable video: every list is empty$"):
        ensure_builtin_data(_cfg(root))
