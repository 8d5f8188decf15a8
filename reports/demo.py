"""The demo run's report folder: metrics.json, summary.md and loss.png."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from pipelines.counts import StageCounts, format_summary  # noqa: E402

log = logging.getLogger(__name__)


def smoothed(values: list[float], alpha: float = 0.1) -> list[float]:
    """Exponential moving average (TensorBoard's smoothing), started at the first value."""
    out: list[float] = []
    for v in values:
        out.append(v if not out else out[-1] + alpha * (v - out[-1]))
    return out


def plot_loss(history: list[dict], path: Path) -> None:
    """The loss per step (raw and smoothed) and, on a second axis, the learning rate."""
    steps = [h["step"] for h in history]
    losses = [h["loss"] for h in history]
    fig, ax = plt.subplots(figsize=(6.5, 3.5), dpi=120)
    ax.plot(steps, losses, lw=0.8, alpha=0.4, color="tab:blue", label="loss")
    ax.plot(steps, smoothed(losses), lw=1.6, color="tab:blue", label="loss (smoothed)")
    ax.set_xlabel("step")
    ax.set_ylabel("diffusion loss")
    ax.set_yscale("log")
    lr_ax = ax.twinx()
    lr_ax.plot(steps, [h["lr"] for h in history], lw=1.0, color="tab:orange", label="lr")
    lr_ax.set_ylabel("learning rate")
    lines = ax.get_lines() + lr_ax.get_lines()
    ax.legend(lines, [line.get_label() for line in lines], fontsize=7, loc="upper right")
    ax.set_title("Two-Tower LCM pre-training (loss per embedding, summed over dims)",
                 fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_demo_report(out: Path, *, counts: list[StageCounts], history: list[dict],
                      evaluation: dict, checkpoint: str, timings: dict[str, float]) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    metrics = {
        "checkpoint": checkpoint,
        "corpus": [c.as_dict() for c in counts],
        "training": {"steps": len(history), "first_loss": history[0]["loss"],
                     "last_loss": history[-1]["loss"],
                     "embeddings_seen": sum(h["embeddings"] for h in history)},
        "evaluation": evaluation,
        "seconds": timings,
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False))
    plot_loss(history, out / "loss.png")

    lines = [
        "# Mimir demo run", "",
        f"Final checkpoint: `{checkpoint}`", "",
        "## Corpus", "", "```", format_summary(counts), "```", "",
        "## Pre-training", "",
        f"{len(history)} steps, loss {history[0]['loss']:.4f} -> {history[-1]['loss']:.4f}, "
        f"{metrics['training']['embeddings_seen']} embeddings seen.", "",
        "![loss](loss.png)", "",
        "## Evaluation (next-sentence prediction)", "",
        f"{evaluation['documents']} documents with at least {evaluation['min_sentences']} "
        f"sentences, {evaluation['prefixes']} prefixes.", "",
        "| language | documents | prefixes | L2 | round-trip L2 |",
        "|---|---:|---:|---:|---:|",
    ]
    for lang, r in evaluation["per_language"].items():
        lines.append(f"| {lang} | {r['documents']} | {r['prefixes']} | {r['l2']:.4f} | "
                     f"{r['round_trip_l2']:.4f} |")
    lines.append(f"| **all** | {evaluation['documents']} | {evaluation['prefixes']} | "
                 f"{evaluation['l2']:.4f} | {evaluation['round_trip_l2']:.4f} |")
    lines += ["", "## Wall time (s)", "", "| job | seconds |", "|---|---:|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in timings.items()]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    log.info("report written to %s", out)
    return metrics
