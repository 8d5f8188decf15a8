import math

import numpy as np
import pytest
import torch

from mimir_model.diffusion import (NoiseSchedule, SamplerConfig, cfg_dropout_mask, diffusion_loss,
                                   guided_step, sample_next, trailing_timesteps)
from mimir_model.two_tower import TwoTowerLCM, preset


def _alpha_bar_reference(n: int = 100) -> list[float]:
    """Straight from the equations: cumprod of clipped cosine betas, then zero terminal SNR."""
    f = lambda s: math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2
    ab, prod = [], 1.0
    for i in range(n):
        prod *= 1 - min(1 - f((i + 1) / n) / f(i / n), 0.999)
        ab.append(prod)
    s0, sT = math.sqrt(ab[0]), math.sqrt(ab[-1])
    return [((math.sqrt(a) - sT) * s0 / (s0 - sT)) ** 2 for a in ab]


def test_alpha_bar():
    ab = NoiseSchedule(100).alpha_bar
    assert ab.dtype == torch.float64
    ref = _alpha_bar_reference()
    for t, approx in [(0, 0.99937), (50, 0.478), (90, 0.0194), (99, 0.0)]:
        assert ab[t].item() == pytest.approx(ref[t], rel=1e-12, abs=1e-15)
        assert ab[t].item() == pytest.approx(approx, rel=2e-3, abs=1e-12)
    assert ab[99].item() == 0.0
    assert bool((ab[1:] < ab[:-1]).all())


def test_add_noise():
    s = NoiseSchedule()
    x0, eps = torch.ones(1, 2, 3), torch.full((1, 2, 3), 2.0)
    xt = s.add_noise(x0, torch.tensor([[0, 99]]), eps)
    ab0 = s.alpha_bar[0].item()
    assert torch.allclose(xt[0, 0], torch.full((3,), math.sqrt(ab0) + 2 * math.sqrt(1 - ab0)))
    assert torch.equal(xt[0, 1], torch.full((3,), 2.0))  # t=99: pure noise


def test_trailing_timesteps():
    assert trailing_timesteps(100, 40) == [
        99, 97, 94, 91, 89, 87, 84, 81, 79, 77, 74, 71, 69, 67, 64, 61, 59, 57, 54, 51,
        49, 47, 44, 41, 39, 37, 34, 31, 29, 27, 24, 21, 19, 17, 14, 11, 9, 7, 4, 1]
    assert trailing_timesteps(100, 4) == [99, 74, 49, 24]


def test_add_noise_in_bf16_keeps_the_float32_noise_level_at_t0_and_t1():
    """bf16 rounds alpha_bar(0) and alpha_bar(1) to 1; computed in float32 the noise stays."""
    s = NoiseSchedule()
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(4096, 64, generator=g).bfloat16()
    eps = torch.randn(4096, 64, generator=g).bfloat16()
    rms = lambda d: d.float().pow(2).mean().sqrt().item()
    for t in (0, 1):
        ab = s.alpha_bar[t].item()
        level = math.sqrt((1 - math.sqrt(ab)) ** 2 + (1 - ab))  # x0, eps of unit variance
        tt = torch.full((4096,), t)
        f32 = s.add_noise(x0.float(), tt, eps.float()) - x0.float()
        bf16 = s.add_noise(x0, tt, eps)
        assert bf16.dtype == torch.bfloat16
        assert rms(f32) == pytest.approx(level, rel=0.02)
        assert rms(bf16.float() - x0.float()) == pytest.approx(rms(f32), rel=0.02)
    assert level == pytest.approx(0.042, abs=5e-4) and rms(f32) > 0.04


def _prefix_mask(lengths: list[int], T: int, start: list[int] | None = None) -> torch.Tensor:
    pos = torch.arange(T)
    mask = pos < torch.tensor(lengths)[:, None]
    return mask if start is None else mask & (pos >= torch.tensor(start)[:, None])


def test_cfg_dropout_pretraining_drops_the_reference_rows_of_every_batch():
    """The LCM reference (attention_masks.py): floor((T - 1) * 0.15) rows of the padded
    length T, never row 0, one set for the whole batch, in every batch (no coin flip)."""
    g = torch.Generator().manual_seed(0)
    full = cfg_dropout_mask(torch.tensor([128] * 3), _prefix_mask([128] * 3, 128), generator=g)
    assert full.sum(1).tolist() == [19, 19, 19]  # 19 / 128 = 14.8% of the positions
    assert torch.equal(full[0], full[1]) and torch.equal(full[0], full[2])
    assert not full[:, 0].any()
    # T = 41 (the longest): 6 rows, the same for the shorter sequence, whose rows past its
    # end (20) fall on padding.
    mask = cfg_dropout_mask(torch.tensor([41, 20]), _prefix_mask([41, 20], 41), generator=g)
    assert mask.sum(1).tolist() == [6, 6] and torch.equal(mask[0], mask[1])
    assert not mask[:, 0].any()
    # T = 7: floor(6 * 0.15) = 0; T = 8: one row.
    assert not cfg_dropout_mask(torch.tensor([7, 3]), _prefix_mask([7, 3], 7), generator=g).any()
    assert cfg_dropout_mask(torch.tensor([8]), _prefix_mask([8], 8), generator=g).sum() == 1
    # Every batch: 50 batches of full chunks drop exactly 50 x 19 rows per sequence.
    total = sum(int(cfg_dropout_mask(torch.tensor([128]), _prefix_mask([128], 128),
                                     generator=g).sum()) for _ in range(50))
    assert total == 50 * 19
    # A different set of rows per batch.
    assert not torch.equal(full[0], cfg_dropout_mask(torch.tensor([128]), _prefix_mask(
        [128], 128), generator=g)[0])


def test_cfg_dropout_instruction_tuning_draws_rows_among_each_instances_targets():
    """Instances with context 5 and 2 and targets 21 and 14: the longest target part is 21,
    so each instance drops floor(20 * 0.15) = 3 rows among its target rows 1..20 (counted
    from its first target, never that one), drawn for each instance separately."""
    g = torch.Generator().manual_seed(0)
    lengths, start = torch.tensor([26, 16]), [5, 2]
    loss_mask = _prefix_mask([26, 16], 26, start)
    pos = torch.arange(26)
    differ = False
    for _ in range(20):
        mask = cfg_dropout_mask(lengths, loss_mask, generator=g)
        assert mask.sum(1).tolist() == [3, 3]
        for b, s0 in enumerate(start):
            dropped = pos[mask[b]]
            assert ((dropped >= s0 + 1) & (dropped <= s0 + 20)).all()
        assert not (mask & ~loss_mask & (pos < lengths[:, None])).any()  # never context
        differ |= not torch.equal(pos[mask[0]] - 5, pos[mask[1]] - 2)
    assert differ


def test_guided_step_matches_float64_derivation():
    cfg = SamplerConfig()
    rng = np.random.default_rng(0)
    x, xc, xu = (rng.standard_normal((2, 8)) for _ in range(3))
    ab_t, ab_prev = 0.3, 0.45
    # float64 re-derivation of DESIGN's equations
    ec = (x - math.sqrt(ab_t) * xc) / math.sqrt(1 - ab_t)
    eu = (x - math.sqrt(ab_t) * xu) / math.sqrt(1 - ab_t)
    eg = eu + 3.0 * (ec - eu)
    r = ec.std(axis=1, ddof=1, keepdims=True) / eg.std(axis=1, ddof=1, keepdims=True)
    e = (0.7 * r + 0.3) * eg
    x0 = (x - math.sqrt(1 - ab_t) * e) / math.sqrt(ab_t)
    e = e / 1.00045
    x_prev = math.sqrt(ab_prev) * x0 + math.sqrt(1 - ab_prev) * e
    t = lambda a: torch.tensor(a, dtype=torch.float32)
    got_prev, got_x0 = guided_step(t(x), t(xc), t(xu), ab_t, ab_prev, cfg)
    assert np.allclose(got_x0.numpy(), x0, atol=1e-5)
    assert np.allclose(got_prev.numpy(), x_prev, atol=1e-5)
    # First step (ab_t = 0): x0 is the conditional prediction, eps is x / epsilon_scaling.
    got_prev, got_x0 = guided_step(t(x), t(xc), t(xu), 0.0, ab_prev, cfg)
    assert torch.equal(got_x0, t(xc))
    expect = math.sqrt(ab_prev) * xc + math.sqrt(1 - ab_prev) * x / 1.00045
    assert np.allclose(got_prev.numpy(), expect, atol=1e-5)


class RecordingModel(torch.nn.Module):
    """x0_cond = 1, x0_uncond = 0 everywhere; records every x_t and t it is called with."""

    def __init__(self):
        super().__init__()
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.encodes = 0

    def encode_context(self, context):
        self.encodes += 1
        return context

    def predict_next(self, ctx_out, lengths, x_t, t, drop):
        self.calls.append((x_t.clone(), t.clone()))
        return (~drop).float()[:, None].expand_as(x_t)


@pytest.mark.parametrize("rule", ["schedule", "reference"])
def test_sample_next_prev_timestep_rule(rule):
    s = NoiseSchedule()
    cfg = SamplerConfig(prev_timestep=rule)
    model = RecordingModel().eval()
    ctx = torch.zeros(1, 2, 4)
    out = sample_next(model, s, cfg, ctx, torch.tensor([2]), torch.Generator().manual_seed(0))
    assert model.encodes == 1 and len(model.calls) == 40
    assert [int(c[1][0]) for c in model.calls] == trailing_timesteps()
    assert model.calls[0][1].tolist() == [99, 99]
    # Replay in float64: step i maps x to x_prev at the rule's timestep.
    ab = s.alpha_bar.tolist()
    x = model.calls[0][0][0].double()
    assert torch.allclose(x, 0.6 * torch.randn(1, 4, generator=torch.Generator().manual_seed(0))[0].double())
    ts = trailing_timesteps()
    for i, t in enumerate(ts[:-1]):
        prev = ts[i + 1] if rule == "schedule" else t - 2
        one, zero = torch.ones(4, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)
        x, _ = guided_step(x, one, zero, ab[t], ab[prev], cfg)
        assert torch.allclose(model.calls[i + 1][0][0].double(), x, atol=1e-4), (i, t)
    assert out.shape == (1, 4)
    # The rules part at t=97: the schedule steps to 94, the reference rule to 95.
    x1 = model.calls[1][0][0].double()
    other = 95 if rule == "schedule" else 94
    wrong, _ = guided_step(x1, one, zero, ab[97], ab[other], cfg)
    assert not torch.allclose(model.calls[2][0][0].double(), wrong, atol=1e-3)


def test_sample_next_refuses_training_mode():
    with pytest.raises(ValueError):
        sample_next(RecordingModel().train(), NoiseSchedule(), SamplerConfig(),
                    torch.zeros(1, 1, 4), torch.tensor([1]))


def test_sample_next_returns_conditional_x0_without_guidance_gap():
    """When cond and uncond agree, every step recovers their x0, so the output is that x0."""
    class Constant(RecordingModel):
        def predict_next(self, ctx_out, lengths, x_t, t, drop):
            return torch.linspace(-1, 1, x_t.shape[1]).expand_as(x_t)

    out = sample_next(Constant().eval(), NoiseSchedule(), SamplerConfig(), torch.zeros(3, 2, 5),
                      torch.tensor([2, 1, 2]), torch.Generator().manual_seed(1))
    assert torch.allclose(out, torch.linspace(-1, 1, 5).expand(3, 5), atol=1e-4)


def test_tiny_model_overfits_three_documents():
    torch.manual_seed(0)
    model = TwoTowerLCM(preset("tiny", dropout=0.0))
    s = NoiseSchedule()
    docs = torch.randn(3, 4, 64)
    lengths = torch.tensor([4, 4, 4])
    # Position 0 has no context, so its x0 is not determined by the context: leave it out.
    loss_mask = torch.ones(3, 4, dtype=torch.bool)
    loss_mask[:, 0] = False

    def eval_loss() -> float:
        with torch.no_grad():
            g = torch.Generator().manual_seed(123)
            return sum(diffusion_loss(model, s, docs, lengths, loss_mask, g, cfg_frac=0.0)[0].item()
                       for _ in range(8)) / 8

    before = eval_loss()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(0)
    for _ in range(100):
        loss, n = diffusion_loss(model, s, docs, lengths, loss_mask, g, cfg_frac=0.0)
        assert n.item() == 9
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = eval_loss()
    assert after < before / 10, (before, after)
