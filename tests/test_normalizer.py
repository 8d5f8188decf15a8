import numpy as np
import pytest
import torch

from mimir_model.normalizer import RobustNormalizer, normal_spread

NORMAL_IQR = normal_spread(25, 75)


def _data(n: int = 101, d: int = 6, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, d)) * np.arange(1, d + 1) + 3).astype(np.float32)


def test_constant():
    assert NORMAL_IQR == pytest.approx(1.3489795003921634, rel=1e-15)


def test_exact_fit_matches_numpy_on_small_array():
    x = np.array([[1, 10], [2, 30], [4, 20], [8, 50], [16, 40]], dtype=np.float32)
    # Fed in uneven batches; fits exactly because 5 rows <= max_rows.
    norm = RobustNormalizer().fit([x[:2], x[2:3], x[3:]], max_rows=5)
    # By hand: medians 4 and 30; quartiles (linear) 2, 8 and 20, 40.
    assert norm.center.tolist() == [4.0, 30.0]
    assert norm.scale.tolist() == pytest.approx([6 / 1.3489795, 20 / 1.3489795], rel=1e-6)
    assert norm.fit_rows == 5
    y = _data()
    norm = RobustNormalizer().fit([y[:50], y[50:]])
    q25, med, q75 = np.percentile(y.astype(np.float64), [25, 50, 75], axis=0)
    assert np.array_equal(norm.center.numpy(), np.median(y.astype(np.float64), axis=0).astype(np.float32))
    assert np.array_equal(norm.center.numpy(), med.astype(np.float32))
    assert np.array_equal(norm.scale.numpy(), ((q75 - q25) / NORMAL_IQR).astype(np.float32))


def test_normalize_roundtrip_numpy_and_torch():
    y = _data()
    norm = RobustNormalizer().fit([y])
    z = norm.normalize(y)
    assert z.dtype == np.float32
    assert np.allclose(np.median(z, axis=0), 0, atol=1e-6)
    q25, q75 = np.percentile(z, [25, 75], axis=0)
    assert np.allclose(q75 - q25, NORMAL_IQR, atol=1e-5)
    assert np.allclose(norm.denormalize(z), y, atol=1e-5)
    zt = norm.normalize(torch.from_numpy(y).double())
    assert zt.dtype == torch.float64 and np.allclose(zt.numpy(), z, atol=1e-5)
    assert torch.allclose(norm.denormalize(zt).float(), torch.from_numpy(y), atol=1e-5)


def test_constant_dimension_gets_unit_scale():
    y = _data()
    y[:, 2] = 7.0
    norm = RobustNormalizer().fit([y])
    assert norm.scale[2].item() == 1.0 and norm.center[2].item() == 7.0
    assert np.all(norm.normalize(y)[:, 2] == 0.0)


def test_reservoir_approximation_is_bounded_and_deterministic():
    rng = np.random.default_rng(1)
    batches = [rng.standard_normal((1000, 3)).astype(np.float32) for _ in range(20)]
    a = RobustNormalizer().fit(batches, max_rows=4000, seed=5)
    b = RobustNormalizer().fit(batches, max_rows=4000, seed=5)
    assert a.fit_rows == 20_000
    assert torch.equal(a.center, b.center) and torch.equal(a.scale, b.scale)
    # Standard normal: median 0, scale 1; a 4000-row sample gets within a few hundredths.
    assert a.center.abs().max() < 0.06
    assert (a.scale - 1).abs().max() < 0.08
    # Uniform sample: the reservoir is not biased towards early or late batches.
    shifted = [b_ + i for i, b_ in enumerate(batches)]  # batch i centered at i
    c = RobustNormalizer().fit(shifted, max_rows=4000, seed=5)
    assert abs(c.center.mean().item() - 9.5) < 0.6


def test_save_load_roundtrip(tmp_path):
    norm = RobustNormalizer().fit([_data()])
    path = tmp_path / "normalizer.safetensors"
    norm.save(path)
    back = RobustNormalizer.load(path)
    assert torch.equal(back.center, norm.center) and torch.equal(back.scale, norm.scale)
    assert (back.dim, back.fit_rows) == (6, 101)


def test_empty_stream_fails():
    with pytest.raises(ValueError):
        RobustNormalizer().fit([])


def test_lcm_reference_method_uses_the_percent_quantiles_the_reference_passes_to_sklearn():
    """quantile_range=(0.25, 0.75) read as percent: scale = (P0.75% - P0.25%) /
    (z(0.0075) - z(0.0025)) = (P0.75% - P0.25%) / 0.374655; the center is the median."""
    y = _data(n=2001)
    norm = RobustNormalizer().fit([y], method="lcm_reference")
    lo, med, hi = np.percentile(y.astype(np.float64), [0.25, 50, 0.75], axis=0)
    assert normal_spread(0.25, 0.75) == pytest.approx(0.374655, rel=1e-5)
    assert np.allclose(norm.scale.numpy(), (hi - lo) / 0.3746547, rtol=1e-5)
    assert np.array_equal(norm.center.numpy(), med.astype(np.float32))
    iqr = RobustNormalizer().fit([y])
    # On Gaussian data both estimate the standard deviation; here a heavy-tailed dimension.
    t = np.random.default_rng(3).standard_t(2, size=(20000, 1)).astype(np.float32)
    ratio = (RobustNormalizer().fit([t], method="lcm_reference").scale
             / RobustNormalizer().fit([t]).scale).item()
    assert ratio > 2.5, ratio
    assert iqr.scale.numpy() == pytest.approx(((np.percentile(y, 75, axis=0) - np.percentile(
        y, 25, axis=0)) / NORMAL_IQR), rel=1e-5)
