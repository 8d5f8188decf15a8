"""Per-dimension robust scaler for SONAR embeddings (sklearn RobustScaler, unit_variance=True).

center = median, scale = (q75 - q25) / 1.349 (the IQR of a unit normal), both per dimension;
normalize (x - center) / scale, denormalize x * scale + center.

method "lcm_reference" reproduces what the LCM reference code computes instead: it passes
quantile_range=(0.25, 0.75) to sklearn, which reads percent, so its scale is
(P0.75% - P0.25%) / (z(0.0075) - z(0.0025)), 0.98-5.7x our IQR scale depending on the tails.
"""

from __future__ import annotations

import logging
from pathlib import Path
from statistics import NormalDist
from typing import Iterable, Literal, TypeVar

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

log = logging.getLogger(__name__)

# The (low, high) percentiles of the scale per method: "iqr" the paper's (25%, 75%);
# "lcm_reference" the LCM code's (0.25%, 0.75%).
Method = Literal["iqr", "lcm_reference"]
PERCENTILES: dict[str, tuple[float, float]] = {"iqr": (25.0, 75.0),
                                               "lcm_reference": (0.25, 0.75)}


def normal_spread(low: float, high: float) -> float:
    """Distance between the percentiles `low` and `high` of N(0, 1) (25, 75: the IQR 1.349)."""
    return NormalDist().inv_cdf(high / 100) - NormalDist().inv_cdf(low / 100)

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


class RobustNormalizer:
    def __init__(self, center: torch.Tensor | None = None, scale: torch.Tensor | None = None,
                 fit_rows: int = 0):
        self.center = center
        self.scale = scale
        self.fit_rows = fit_rows
        self.skipped_rows = 0  # non-finite rows the fit left out

    @property
    def dim(self) -> int:
        return self.center.shape[0]

    def fit(self, stream: Iterable[np.ndarray], max_rows: int = 200_000, seed: int = 0,
            method: Method = "iqr") -> "RobustNormalizer":
        """Fit on batches [n, dim] with at most max_rows rows in memory (200k x 1024 fp32 = 800 MB).

        method: "iqr" (scale = IQR / 1.349) or "lcm_reference" (the module docstring).

        Exact (same median and linear-interpolated quartiles as numpy/sklearn) when the stream
        has at most max_rows rows. Beyond that, the statistics are computed on a uniform
        reservoir sample (Algorithm R, seeded, so a refit on the same stream is identical): the
        quartile error is then about sqrt(p(1-p)/max_rows) in probability units. Rows with a
        NaN or Inf are left out and counted (`skipped_rows`): one bad vector must not give a
        dimension a NaN centre or scale.
        """
        rng = np.random.default_rng(seed)
        reservoir: np.ndarray | None = None
        seen = skipped = 0
        for batch in stream:
            batch = np.asarray(batch, dtype=np.float32)
            finite = np.isfinite(batch).all(axis=1)
            if not finite.all():
                skipped += int((~finite).sum())
                batch = batch[finite]
            if reservoir is None:
                reservoir = np.empty((max_rows, batch.shape[1]), dtype=np.float32)
            fill = min(max(max_rows - seen, 0), len(batch))
            reservoir[seen:seen + fill] = batch[:fill]
            rest = batch[fill:]
            if len(rest):
                # Row with global index i replaces slot j ~ U[0, i] when j < max_rows.
                idx = np.arange(seen + fill, seen + len(batch))
                slots = rng.integers(0, idx + 1)
                hit = slots < max_rows
                slots, rows = slots[hit], rest[hit]
                # Rows are processed in order, so a slot hit twice keeps the later row.
                _, last = np.unique(slots[::-1], return_index=True)
                keep = len(slots) - 1 - last
                reservoir[slots[keep]] = rows[keep]
            seen += len(batch)
        self.skipped_rows = skipped
        if reservoir is None or seen == 0:
            raise ValueError("cannot fit a normalizer on an empty stream" + (
                f": all {skipped} rows have NaN or Inf values" if skipped else ""))
        if skipped:
            log.warning("left %d rows with NaN or Inf values out of the fit", skipped)
        sample = reservoir[:min(seen, max_rows)]
        low, high = PERCENTILES[method]
        q = np.empty((3, sample.shape[1]))
        for s in range(0, sample.shape[1], 64):  # float64 a few columns at a time
            q[:, s:s + 64] = np.percentile(sample[:, s:s + 64].astype(np.float64),
                                           [low, 50, high], axis=0)
        q_low, median, q_high = q
        scale = (q_high - q_low) / normal_spread(low, high)
        # A (near-)constant dimension gets scale 1, as sklearn's _handle_zeros_in_scale does:
        # it is only centered rather than blown up by a division by ~0.
        scale[scale < 10 * np.finfo(np.float64).eps] = 1.0
        self.center = torch.from_numpy(median.astype(np.float32))
        self.scale = torch.from_numpy(scale.astype(np.float32))
        self.fit_rows = seen
        log.info("fitted normalizer on %d rows (%s)", seen,
                 "exact" if seen <= max_rows else f"reservoir of {max_rows}")
        return self

    def _stats(self, x: ArrayT) -> tuple[ArrayT, ArrayT]:
        if isinstance(x, torch.Tensor):
            return self.center.to(x.device, x.dtype), self.scale.to(x.device, x.dtype)
        return self.center.numpy().astype(x.dtype), self.scale.numpy().astype(x.dtype)

    def normalize(self, x: ArrayT) -> ArrayT:
        center, scale = self._stats(x)
        return (x - center) / scale

    def denormalize(self, x: ArrayT) -> ArrayT:
        center, scale = self._stats(x)
        return x * scale + center

    def save(self, path: str | Path) -> None:
        save_file({"center": self.center.contiguous(), "scale": self.scale.contiguous()}, str(path),
                  metadata={"dim": str(self.dim), "fit_rows": str(self.fit_rows)})

    @classmethod
    def load(cls, path: str | Path) -> "RobustNormalizer":
        """A saved normalizer, checked: readable, consistent and finite (a NaN centre or
        scale would turn every loss into NaN)."""
        hint = "refit it with `python -m jobs.fit_normalizer`"
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                norm = cls(f.get_tensor("center"), f.get_tensor("scale"), int(meta["fit_rows"]))
        except Exception as e:  # safetensors raises its own error types (truncated, ...)
            raise ValueError(f"{path}: not a readable normalizer ({type(e).__name__}: {e}); "
                             f"{hint}") from None
        if norm.dim != int(meta["dim"]) or norm.scale.shape != norm.center.shape:
            raise ValueError(f"{path}: inconsistent normalizer (dim {meta['dim']}); {hint}")
        bad = ~(torch.isfinite(norm.center) & torch.isfinite(norm.scale))
        if bad.any():
            raise ValueError(f"{path}: {int(bad.sum())} dimensions have a NaN or Inf centre or "
                             f"scale (e.g. dimension {int(bad.nonzero()[0])}); {hint}")
        return norm
