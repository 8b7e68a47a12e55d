"""EvalResults: validation on construction, meta normalisation, exact .npz / .pt round trips."""
from pathlib import Path

import numpy as np
import pytest
import torch

from stvit_video.report import ResultsError, EvalResults
from tests.helpers.results import FULL_META, random_results


def _kwargs(**changes):
    base = dict(logits=np.zeros((2, 6, 3), np.float32), valid=np.ones((2, 6), bool), labels=np.array([0, 2]),
                paths=["a.mp4", "b.mp4"], class_names=["x", "y", "z"], num_clips=2, num_crops=3)
    base.update(changes)
    return base


def _assert_same(a: EvalResults, b: EvalResults) -> None:
    assert a.logits.dtype == b.logits.dtype == np.float32
    assert a.valid.dtype == b.valid.dtype == np.bool_
    assert a.labels.dtype == b.labels.dtype == np.int64
    np.testing.assert_array_equal(a.logits, b.logits)  # NaN garbage in failed views compares equal too
    np.testing.assert_array_equal(a.valid, b.valid)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert (a.paths, a.class_names, a.num_clips, a.num_crops, a.ensemble) == \
           (b.paths, b.class_names, b.num_clips, b.num_crops, b.ensemble)
    assert a.failures == b.failures and a.meta == b.meta


def test_converts_tensors_and_lists_to_the_contract_dtypes():
    r = EvalResults(**_kwargs(logits=torch.zeros(2, 6, 3, dtype=torch.float64),
                              valid=torch.ones(2, 6, dtype=torch.bool), labels=[0, 2],
                              paths=(Path("a.mp4"), "b.mp4")))
    assert r.logits.dtype == np.float32 and r.valid.dtype == np.bool_ and r.labels.dtype == np.int64
    assert r.paths == ["a.mp4", "b.mp4"]
    assert (r.num_videos, r.num_views, r.num_classes) == (2, 6, 3)
    assert r.ensemble == "sum" and r.failures == {} and r.meta == {}


@pytest.mark.parametrize("changes, message", [
    (dict(logits=np.zeros((2, 6), np.float32)), r"logits: expected \(N, V, K\), got shape \(2, 6\)"),
    (dict(valid=np.ones((2, 5), bool)), r"valid: expected shape \(N, V\) = \(2, 6\) .*got \(2, 5\)"),
    (dict(valid=np.ones((2, 6), np.uint8)), r"valid: expected a bool array, got dtype uint8"),
    (dict(labels=np.array([0, 1, 2])), r"labels: expected shape \(N,\) = \(2,\) .*got \(3,\)"),
    (dict(labels=np.array([0.0, 1.0])), r"labels: expected integer class ids, got dtype float64"),
    (dict(labels=np.array([0, 3])), r"labels: 1 labels outside \[0, K=3\), first: row 1 \(b.mp4\) has label 3"),
    (dict(paths=["a.mp4"]), r"paths: expected N = 2 paths .*got 1"),
    (dict(class_names=["x", "y"]), r"class_names: expected K = 3 names .*got 2"),
    (dict(class_names=["x", "y", 3]), r"class_names\[2\]: expected str, got int"),
    (dict(num_clips=3), r"logits: V = 6 views .* num_clips x num_crops = 3 x 3 = 9"),
    (dict(num_crops=0), r"num_crops: expected an int >= 1, got 0"),
    (dict(ensemble="mean"), r"ensemble: expected one of \('sum', 'max'\), got 'mean'"),
    (dict(failures={7: "x"}), r"failures: rows \[7\] are outside \[0, N=2\)"),
    (dict(failures={0: 1}), r"failures\[0\]: expected the decoder's reason as str"),
    (dict(meta={"cost": {"device": object()}}), r"meta\['cost'\]\['device'\]: object is not JSON-able"),
    (dict(meta={"cost": {1: 2}}), r"meta\['cost'\]: key 1 is not a str"),
])
def test_validation_names_the_field_and_shapes(changes, message):
    with pytest.raises(ResultsError, match=message):
        EvalResults(**_kwargs(**changes))


def test_non_finite_logits_are_rejected_only_in_valid_views():
    logits = np.zeros((2, 6, 3), np.float32)
    logits[0, 4, 1] = np.nan
    valid = np.ones((2, 6), bool)
    with pytest.raises(ResultsError, match=r"1 valid views have non-finite logits \(first: video 0 a.mp4, view 4\)"):
        EvalResults(**_kwargs(logits=logits, valid=valid))
    valid[0, 4] = False  # the same garbage in a failed view is fine
    EvalResults(**_kwargs(logits=logits, valid=valid))


def test_meta_is_normalised_to_plain_json():
    r = EvalResults(**_kwargs(meta={"model": {"params_m": np.float32(2.5), "gflops": float("nan")},
                                    "cost": {"global_batch": np.int64(8), "shape": (1, 2), "ok": np.bool_(True)},
                                    "checkpoint": {"path": Path("ckpt.pyth")}}))
    assert r.meta == {"model": {"params_m": 2.5, "gflops": None},
                      "cost": {"global_batch": 8, "shape": [1, 2], "ok": True}, "checkpoint": {"path": "ckpt.pyth"}}
    assert type(r.meta["cost"]["global_batch"]) is int and type(r.meta["cost"]["ok"]) is bool


@pytest.mark.parametrize("suffix", [".npz", ".pt"])
def test_save_load_round_trip_is_exact(tmp_path, suffix):
    results = random_results(num_videos=9, num_classes=7, num_clips=2, num_crops=3, meta=FULL_META)
    results.ensemble = "max"
    path = results.save(tmp_path / "sub" / f"test_results{suffix}")
    assert path.is_file() and sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temp file left
    loaded = EvalResults.load(path)
    _assert_same(results, loaded)
    assert np.isnan(loaded.logits[3]).all()
    assert loaded.failures == {3: "decord: cannot open <file>", 5: "mid-stream DECORDError"}


def test_pt_file_is_a_plain_dict_of_tensors(tmp_path):
    path = random_results(num_videos=6).save(tmp_path / "r.pt")
    payload = torch.load(path, weights_only=True)
    assert payload["logits"].dtype == torch.float32 and payload["logits"].shape == (6, 12, 8)
    assert payload["valid"].dtype == torch.bool and payload["labels"].dtype == torch.int64
    assert payload["format_version"] == 1 and payload["failures"][3].startswith("decord")


@pytest.mark.parametrize("suffix", [".npz", ".pt"])
def test_unreadable_files_name_the_file(tmp_path, suffix):
    missing = tmp_path / f"missing{suffix}"
    with pytest.raises(ResultsError, match=f"results file not found: .*missing{suffix}"):
        EvalResults.load(missing)
    garbage = tmp_path / f"garbage{suffix}"
    garbage.write_bytes(b"this is not a results file" * 10)
    with pytest.raises(ResultsError, match=f"garbage{suffix}: cannot read as {suffix} results"):
        EvalResults.load(garbage)


def test_wrong_content_and_suffix_are_reported(tmp_path):
    other = tmp_path / "other.npz"
    np.savez(other, logits=np.zeros((1, 1, 1)))
    with pytest.raises(ResultsError, match=r"other.npz: missing arrays \['valid', 'labels', 'info'\]"):
        EvalResults.load(other)
    with pytest.raises(ResultsError, match=r"unknown results format '.json'"):
        random_results(num_videos=6).save(tmp_path / "r.json")
    torch.save({"logits": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ResultsError, match=r"other.pt: missing tensors \['valid', 'labels'\]"):
        EvalResults.load(tmp_path / "other.pt")


def test_newer_format_is_refused(tmp_path):
    path = random_results(num_videos=6).save(tmp_path / "r.pt")
    payload = torch.load(path, weights_only=True)
    payload["format_version"] = 99
    torch.save(payload, path)
    with pytest.raises(ResultsError, match="format_version 99 is not supported"):
        EvalResults.load(path)


def test_a_crop_count_no_clip_gives_is_refused():
    with pytest.raises(ResultsError, match="num_crops: a clip gives 1 crop .centre. or 3 .left, centre, right., not 2"):
        EvalResults(**_kwargs(num_clips=3, num_crops=2))


def test_fields_changed_in_place_are_checked_again_before_saving(tmp_path):
    results = random_results(num_videos=6)
    results.ensemble = "mean"
    with pytest.raises(ResultsError, match="ensemble: expected one of"):
        results.save(tmp_path / "r.npz")
    assert not (tmp_path / "r.npz").exists()


@pytest.mark.parametrize("suffix", [".npz", ".pt"])
def test_the_centre_pass_round_trips_and_is_the_one_view_headline(tmp_path, suffix):
    from stvit_video.report import headline_metrics

    logits = np.zeros((2, 6, 3), np.float32)
    logits[:, :, 1] = 5.0  # every grid view says class 1: video 0 (label 0) wrong, video 1 right
    centre = np.array([[5.0, 0, 0], [0, 5.0, 0]], np.float32)  # the centre views get both right
    r = EvalResults(**_kwargs(logits=logits, labels=np.array([0, 1]), centre_logits=centre,
                              centre_valid=np.array([True, True])))
    loaded = EvalResults.load(r.save(tmp_path / f"r{suffix}"))
    np.testing.assert_array_equal(loaded.centre_logits, centre)
    assert loaded.centre_valid.tolist() == [True, True]
    m = headline_metrics(loaded)
    assert (m["top1"], m["one_view_top1"]) == (50.0, 100.0)
    failed = EvalResults(**{**_kwargs(logits=logits, labels=np.array([0, 1])), "centre_logits": centre,
                            "centre_valid": np.array([True, False])})
    assert headline_metrics(failed)["one_view_top1"] == 50.0  # a centre view that failed counts wrong
    plain = EvalResults(**_kwargs(logits=logits, labels=np.array([0, 1])))
    assert headline_metrics(plain)["one_view_top1"] == 50.0 and plain.centre_logits is None
    with pytest.raises(ResultsError, match="give both or neither"):
        EvalResults(**_kwargs(centre_logits=centre))
    with pytest.raises(ResultsError, match=r"expected shapes \(N, K\) = \(2, 3\)"):
        EvalResults(**_kwargs(centre_logits=centre[:1], centre_valid=np.ones(1, bool)))
