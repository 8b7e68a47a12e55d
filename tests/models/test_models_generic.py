"""Every architecture variant: shapes, gradients, checkpointing, timm interface."""
import pytest
import torch


def test_output_shape(variant):
    """Batch 1 and 2, odd T, crops that are not multiples of 32 (padding at every stage)."""
    name, factory = variant
    model = factory(num_classes=7).eval()
    for batch, frames, crop in [(1, 8, 64), (2, 5, 100), (1, 9, 120), (2, 4, 72)]:
        with torch.no_grad():
            logits = model(torch.randn(batch, 3, frames, crop, crop))
        assert logits.shape == (batch, 7), f"{name} at {batch}x{frames}x{crop}"
        assert torch.isfinite(logits).all(), f"{name} at {batch}x{frames}x{crop}"


def test_gradient_reaches_every_parameter(variant):
    name, factory = variant
    model = factory(num_classes=5, drop_path_rate=0.0, head_dropout=0.0)
    # trained-like layer scales, so gradients are not vanishingly small
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "layer_scale" in n:
                p.fill_(0.5)
    model(torch.randn(2, 3, 6, 72, 72)).logsumexp(-1).sum().backward()
    for n, p in model.named_parameters():
        assert p.grad is not None, f"{name}: no gradient reaches {n}"
        assert p.grad.abs().sum() > 0, f"{name}: zero gradient at {n}"


def test_activation_checkpointing_gives_the_same_output_and_gradients(variant):
    _, factory = variant
    model = factory(num_classes=4, drop_path_rate=0.0, head_dropout=0.0)
    x = torch.randn(1, 3, 6, 64, 64)
    ref = model(x)
    ref.sum().backward()
    ref_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.set_grad_checkpointing(True)
    out = model(x)
    out.sum().backward()
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, ref_grads[n], rtol=1e-4, atol=1e-7, msg=lambda m, n=n: f"{n}: {m}")


def test_timm_interface(variant):
    _, factory = variant
    model = factory(num_classes=3).eval()
    x = torch.randn(1, 3, 4, 64, 64)
    feats = model.forward_features(x)
    assert feats.ndim == 5 and feats.shape[:2] == (1, model.num_features)
    assert model.forward_head(feats, pre_logits=True).shape == (1, model.num_features)
    model.reset_classifier(11)
    assert model(x).shape == (1, 11) and model.get_classifier().out_features == 11
    no_decay = model.no_weight_decay()
    assert no_decay and all(n.endswith("relative_position_bias_table") for n in no_decay)


def test_wrong_input_rank_names_the_expected_layout(variant):
    _, factory = variant
    model = factory(num_classes=3)
    with pytest.raises(ValueError, match=r"expects a \(B, C, T, H, W\) video batch, got shape \(3, 4, 64, 64\)"):
        model(torch.randn(3, 4, 64, 64))
