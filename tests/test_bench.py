"""stvit_video.bench (tools/benchmark.py): runs side by side and writes well-formed JSON (shape of
the output, not timing)."""
import json

import pytest

from stvit_video.bench import cli, models


@pytest.mark.parametrize("what", ["inference", "train"])
def test_benchmark_writes_one_row_per_model_with_ratios_to_the_first(tmp_path, capsys, what):
    out = tmp_path / "bench.json"
    assert cli.main(["--what", what, "--models", "swin3d_tiny", "stvit_r_swin3d_tiny_perframe", "--frames", "2",
                         "--crop", "32", "--iters", "1", "--warmup", "0", "--threads", "1", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [r["config"] for r in rows] == ["swin3d_tiny", "stvit_r_swin3d_tiny_perframe"]
    for r in rows:
        assert {"config", "gflops", "clips_per_s", "peak_mem_mb", "flops_ratio", "speedup"} <= r.keys()
        assert r["what"] == what and r["clips_per_s"] > 0 and r["gflops"] > 0 and r["input"] == [3, 2, 32, 32]
    assert rows[0]["flops_ratio"] == 1.0 and rows[0]["speedup"] == 1.0
    for r in rows:  # CPU peak memory: at least the fp32 weights (plus AdamW's two moments in training)
        weights_mb = 4 * r["params_m"] * 1e6 / 2**20
        assert r["peak_mem_mb"] > weights_mb * (3 if what == "train" else 1), r
        assert r["cpu_malloc"].startswith("reuse")
    assert rows[1]["flops_ratio"] == pytest.approx(rows[1]["gflops"] / rows[0]["gflops"])
    assert "stvit_r_swin3d_tiny_perframe" in capsys.readouterr().out


def test_onnx_benchmark_times_onnx_runtime_against_eager_on_the_exported_stvit(tmp_path, capsys):
    # a real STViT-R model through the ONNX export (window attention, adaptive max pooling)
    pytest.importorskip("onnxruntime")
    out = tmp_path / "onnx.json"
    assert cli.main(["--what", "onnx", "--models", "stvit_r_swin3d_demo_perframe", "--frames", "4", "--crop", "32",
                     "--iters", "1", "--warmup", "0", "--threads", "1", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [(r["config"], r["runtime"]) for r in rows] == [("stvit_r_swin3d_demo_perframe", "eager"),
                                                          ("stvit_r_swin3d_demo_perframe", "onnxruntime")]
    assert rows[0]["speedup"] == 1.0 and rows[1]["speedup"] == pytest.approx(
        rows[1]["clips_per_s"] / rows[0]["clips_per_s"])
    for r in rows:
        assert r["what"] == "onnx" and r["clips_per_s"] > 0 and r["input"] == [3, 4, 32, 32] and r["opset"] == 20
        assert r["max_abs_diff"] < 1e-4 and r["export_s"] > 0 and r["threads"] == 1
    assert "onnxruntime" in capsys.readouterr().out


def test_onnx_benchmark_refuses_what_it_cannot_compare():
    for extra in (["--dtype", "bf16"], ["--device", "cuda"], ["--compile"]):
        with pytest.raises(SystemExit):
            cli.parse_args(["--what", "onnx", *extra])
    assert cli.parse_args(["--what", "onnx"]).models == ["swin3d_tiny", "stvit_r_swin3d_tiny_perframe"]


def test_loader_benchmark_times_decode_items_and_the_training_loader(tmp_path, capsys):
    from stvit_video.bench.loader import write_benchmark_videos

    data = write_benchmark_videos(tmp_path / "videos", 2, size=(64, 48, 30, 30, 8))
    out = tmp_path / "loader.json"
    assert cli.main(["--what", "loader", "--data", str(data), "--workers", "0", "1", "--batch", "2",
                         "--iters", "2", "--warmup", "1", "--decode-clips", "2", "--rounds", "1", "--feed", "1000", "--peak-tflops", "989",
                         "--repeats", "1", "2", "--json", str(out), "--opts", "DATA.NUM_FRAMES", "4",
                         "DATA.TRAIN_CROP_SIZE", "32", "DATA.TRAIN_JITTER_SCALES", "[32, 40]"]) == 0
    rows = json.loads(out.read_text())
    assert [(r["backend"], r["repeated_samples"], r["workers"]) for r in rows] == [
        (backend, k, workers) for backend in ("decord", "pyav") for k in (1, 2) for workers in (0, 1)]
    for r in rows:
        assert r["what"] == "loader" and r["clips_per_s"] > 0 and r["ms_per_clip"] > 0
        assert r["decode_ms_per_clip"] > 0 and r["item_ms_per_clip"] > 0
        # batches leave the loader as uint8 (B, C, T, H, W): normalisation is the device's job
        assert r["dtype"] == "uint8" and r["batch_shape"] == [2, 3, 4, 32, 32]
    table = capsys.readouterr().out
    one, two = rows[1], rows[3]  # decord, 1 worker, k = 1 and 2: the same batch of clips
    assert f"decord, 1 worker(s): k = 2 (window 1 spans) vs k = 1: {two['clips_per_s'] / one['clips_per_s']:.2f}x" \
        in table
    expected = -(-1000 * rows[0]["item_ms_per_clip"] // 1000)  # ceil(1000 clips/s x one worker's s/clip)
    assert f"decord: {int(expected)} worker(s) keep a step of 1000 clips/s fed" in table
    # the per-model projection: 35% of 989 TFLOPs over 2 FLOPs per multiply-add x 3 (train) x 88.06 G
    swin_t = next(line for line in table.splitlines() if line.strip().startswith("swin3d_tiny "))
    clips = 0.35 * 989e12 / (6 * 88.06e9)
    assert f"{clips:7.0f} clips/s" in swin_t and f"{-(-clips * rows[0]['item_ms_per_clip'] // 1000):.0f} workers" in swin_t
    assert "projection (not measured): training clips/s at 35% MFU of a 989-TFLOPs chip" in table
    assert "swin3d_demo" not in table  # only the 32 x 224 variants


def test_loader_benchmark_writes_kinetics_like_videos_when_no_data_is_given(tmp_path):
    from stvit_video.datasets.decoder import open_video
    from stvit_video.bench.loader import KINETICS_LIKE, write_benchmark_videos

    data = write_benchmark_videos(tmp_path / "videos", 1, size=(68, 52, 12, 30, 4))
    assert (data / "train.csv").read_text() == "video_000.mp4 0\n"
    with open_video(data / "video_000.mp4") as video:
        assert video.num_frames == 12
    assert KINETICS_LIKE[:2] == (340, 256)  # short side 256, as data_prep resize writes Kinetics


def test_profiled_inference_runs_every_attention_on_a_fused_kernel(tmp_path):
    # the window attention folds its bias and shift mask into one additive mask for SDPA; a
    # shape SDPA cannot take would silently fall back to the unfused math kernel
    out = tmp_path / "bench.json"
    assert cli.main(["--what", "inference", "--models", "swin3d_tiny", "stvit_r_swin3d_tiny_spatiotemporal",
                         "stvit_swin3d_tiny_perframe", "--frames", "4", "--crop", "64", "--iters", "1",
                         "--warmup", "0", "--threads", "1", "--profile-attention", "--json", str(out)]) == 0
    for row in json.loads(out.read_text()):
        kernels = row["attention_kernels"]
        assert sum(kernels.values()) >= 12 and "math" not in kernels, (row["config"], kernels)


def test_the_cpu_step_peak_counts_what_is_alive_at_once_not_what_was_ever_allocated():
    import torch

    def step():
        a = torch.ones(2**20)  # 4 MiB
        b = torch.ones(2**21)  # 8 MiB, alive with a
        del a, b
        c = torch.ones(2**21)  # 8 MiB after both were freed
        return c.sum()

    peak = models._profiled_peak_bytes(step)
    assert 12 * 2**20 <= peak < 13 * 2**20
