import math

import pytest
import torch

from mimir_model.two_tower import (TwoTowerLCM, cross_attention_mask, preset, swiglu_inner_dim,
                                   timestep_sinusoid)


def _count(name: str) -> int:
    with torch.device("meta"):
        model = TwoTowerLCM(preset(name))
    return sum(p.numel() for p in model.parameters())


def test_parameter_counts_on_meta():
    assert _count("1.6B") == 1_645_538_304
    assert _count("7B") == 6_930_781_696  # the LCM reference's 7B docstring figure


def test_presets_and_ffn_rule():
    assert swiglu_inner_dim(2048) == 5632
    assert swiglu_inner_dim(4096) == 11008
    cfg = preset("tiny", sonar_dim=32, model_dim=128)
    assert (cfg.sonar_dim, cfg.model_dim, cfg.ffn_inner_dim) == (32, 128, 512)
    assert preset("tiny", ffn_inner_dim=100).ffn_inner_dim == 100
    big = preset("1.6B")
    assert (big.num_heads, big.context_layers, big.denoiser_layers, big.max_positions) == (16, 5, 13, 4096)


def test_cross_attention_mask_t3():
    pos = torch.arange(3)[None]
    assert cross_attention_mask(pos, 3).int().tolist() == [[
        [1, 0, 0, 0],  # position 0: zero key only
        [1, 1, 0, 0],  # position 1: zero key + context 0
        [1, 1, 1, 0],  # position 2: zero key + context 0, 1
    ]]
    drop = torch.tensor([[False, True, False]])
    assert cross_attention_mask(pos, 3, drop).int().tolist() == [[
        [1, 0, 0, 0], [1, 0, 0, 0], [1, 1, 1, 0]]]
    # Inference: the new position after 2 context sentences sees both, or nothing when dropped.
    nxt = cross_attention_mask(torch.tensor([[2], [2]]), 3, torch.tensor([[False], [True]]))
    assert nxt.int().tolist() == [[[1, 1, 1, 0]], [[1, 0, 0, 0]]]


def test_timestep_sinusoid():
    emb = timestep_sinusoid(torch.tensor([0, 3]), 8)
    assert emb[0].tolist() == [1, 1, 1, 1, 0, 0, 0, 0]
    # k = 1 of 4: freq 1e4^(-1/4) = 0.1
    assert torch.allclose(emb[1, 1], torch.tensor(3 * 0.1).cos())
    assert torch.allclose(emb[1, 5], torch.tensor(3 * 0.1).sin())


def _model_and_batch(seed: int = 0):
    torch.manual_seed(seed)
    model = TwoTowerLCM(preset("tiny", sonar_dim=16, model_dim=32)).eval()
    # Non-zero modulators so the denoiser layers are not identities.
    for layer in model.denoiser_layers:
        torch.nn.init.normal_(layer.modulator[1].weight, std=0.1)
    B, T = 2, 5
    context = torch.randn(B, T, 16)
    x_t = torch.randn(B, T, 16)
    t = torch.randint(0, 100, (B, T))
    return model, context, x_t, t, torch.tensor([5, 3])


@torch.no_grad()
def test_position_i_depends_only_on_earlier_context_and_own_noise():
    model, context, x_t, t, lengths = _model_and_batch()
    out = model(context, x_t, t, lengths)
    # Changing context 2 affects positions >= 3 only.
    ctx2 = context.clone()
    ctx2[:, 2] += 1
    out2 = model(ctx2, x_t, t, lengths)
    assert torch.equal(out[0, :3], out2[0, :3])
    assert not torch.allclose(out[0, 3], out2[0, 3])
    # Changing x_t / t at position 1 affects position 1 only (identity self-attention).
    x2, t2 = x_t.clone(), t.clone()
    x2[:, 1] += 1
    t2[:, 1] = (t2[:, 1] + 7) % 100
    out3 = model(context, x2, t2, lengths)
    changed = (out3 - out).abs().amax(-1) > 1e-6
    assert changed.tolist() == [[False, True, False, False, False]] * 2


@torch.no_grad()
def test_padding_and_cfg_drop():
    model, context, x_t, t, lengths = _model_and_batch()
    out = model(context, x_t, t, lengths)
    # Sequence 1 has length 3: pad contents (positions 3, 4) change nothing anywhere.
    ctx2 = context.clone()
    ctx2[1, 3:] = 100.0
    assert torch.allclose(model(ctx2, x_t, t, lengths)[1], out[1], atol=1e-6)
    # A dropped position sees no context: same output as with an all-different context.
    drop = torch.zeros(2, 5, dtype=torch.bool)
    drop[0, 3] = True
    a = model(context, x_t, t, lengths, drop)[0, 3]
    b = model(torch.randn_like(context), x_t, t, lengths, drop)[0, 3]
    assert torch.allclose(a, b, atol=1e-6)
    assert not torch.allclose(a, out[0, 3])


@torch.no_grad()
def test_predict_next_matches_training_forward():
    model, context, x_t, t, lengths = _model_and_batch()
    out = model(context, x_t, t, lengths)
    ctx_out = model.encode_context(context)
    i = torch.tensor([4, 2])
    nxt = model.predict_next(ctx_out, i, x_t[[0, 1], i], t[[0, 1], i], torch.tensor([False, False]))
    assert torch.allclose(nxt, out[[0, 1], i], atol=1e-5)


def test_modulators_start_at_zero():
    model = TwoTowerLCM(preset("tiny"))
    for layer in model.denoiser_layers:
        assert not layer.modulator[1].weight.any() and not layer.modulator[1].bias.any()


def test_initialisation_follows_the_lcm_reference():
    """q/k/v Xavier-uniform with gain 2^-0.5, output projections Xavier-uniform, timestep MLP
    N(0, 0.02), all their biases 0 (PyTorch's default would be uniform(+-1/sqrt(fan_in)) with
    non-zero biases)."""
    torch.manual_seed(0)
    model = TwoTowerLCM(preset("tiny", model_dim=128))
    d = model.cfg.model_dim
    attentions = [layer.attn for layer in model.context_layers] + [
        a for layer in model.denoiser_layers for a in (layer.self_attn, layer.cross_attn)]
    xavier = math.sqrt(6 / (d + d))  # bound of a d x d Xavier-uniform matrix
    for attn in attentions:
        for proj, gain in ((attn.q_proj, 2**-0.5), (attn.k_proj, 2**-0.5),
                           (attn.v_proj, 2**-0.5), (attn.out_proj, 1.0)):
            w = proj.weight
            assert w.abs().max() <= gain * xavier
            assert w.std().item() == pytest.approx(gain * xavier / math.sqrt(3), rel=0.03)
            assert not proj.bias.any()
    for linear in (model.time_embed[0], model.time_embed[2]):
        assert linear.weight.std().item() == pytest.approx(0.02, rel=0.03)
        assert linear.weight.mean().abs().item() < 1e-3 and not linear.bias.any()
