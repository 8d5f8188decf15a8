"""Report files of the evaluation jobs: Markdown tables and bar charts like the paper's
Figures 4-8; `python -m jobs.eval_charts` puts several runs (Mimir mixtures, baselines) in one
chart.

Result dictionaries (the JSON each job writes):
- pre-training: {"datasets": {name: {"per_language": {lang: {documents, prefixes, l2,
  round_trip_l2}}, ...}}}
- ROUGE-L (eval_instruct, eval_xlwsd, baseline_lm): {"model": label, "datasets": {name:
  {"per_language": {lang: {examples, rouge_l}}, "examples", "rouge_l"}}}
- alignment pilot: {"per_language": {lang: {pairs, cosine}}, "cosine"}
"""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

log = logging.getLogger(__name__)


def bar_chart(groups: list[str], series: dict[str, list[float]], ylabel: str, title: str,
              path: Path) -> None:
    """Grouped bars: one group per language, one bar per series (metric or model)."""
    x = np.arange(len(groups))
    width = 0.8 / max(len(series), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(groups) * len(series) + 2), 3.8),
                           dpi=120)
    for i, (name, values) in enumerate(series.items()):
        ax.bar(x + (i - (len(series) - 1) / 2) * width, values, width, label=name)
    ax.set_xticks(x, groups, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def pretrain_report(result: dict, out: Path) -> list[Path]:
    """One chart per dataset (L2 vs round-trip L2 per language) and eval_pretrain.md."""
    lines = ["# Pre-training evaluation (next-sentence prediction)", "",
             f"Checkpoint `{result['checkpoint']}`; per language the first "
             f"{result['max_documents']} documents with at least {result['min_sentences']} "
             "sentences, every prefix predicts the next sentence.", ""]
    charts = []
    for name, ds in result["datasets"].items():
        langs = list(ds["per_language"])
        rows = [ds["per_language"][lang] for lang in langs]
        path = out / f"pretrain_{name}.png"
        bar_chart(langs, {"L2": [r["l2"] for r in rows],
                          "Round-trip L2": [r["round_trip_l2"] for r in rows]},
                  "distance", f"Pre-training evaluation: {name}", path)
        charts.append(path)
        lines += [f"## {name}", "", "| language | documents | prefixes | L2 | round-trip L2 |",
                  "|---|---:|---:|---:|---:|"]
        lines += [f"| {lang} | {r['documents']} | {r['prefixes']} | {r['l2']:.4f} | "
                  f"{r['round_trip_l2']:.4f} |" for lang, r in zip(langs, rows)]
        lines += [f"| **mean** | {ds['documents']} | {ds['prefixes']} | {ds['l2']:.4f} | "
                  f"{ds['round_trip_l2']:.4f} |", "", f"![{name}]({path.name})", ""]
    (out / "eval_pretrain.md").write_text("\n".join(lines))
    return charts


def rouge_report(results: list[dict], out: Path, name: str) -> list[Path]:
    """ROUGE-L F1 (x100) per language and model: one chart per dataset and `{name}.md`."""
    datasets = sorted({d for r in results for d in r["datasets"]})
    lines = [f"# ROUGE-L F1 ({name})", "",
             "Scores x100; tokenization in evaluation/rouge.py (every script, no stemming).", ""]
    charts = []
    for ds in datasets:
        langs = sorted({lang for r in results for lang in r["datasets"].get(ds, {})
                        .get("per_language", {})})
        series = {r["model"]: [r["datasets"].get(ds, {}).get("per_language", {})
                               .get(lang, {}).get("rouge_l", float("nan")) for lang in langs]
                  for r in results}
        path = out / f"{name}_{ds}.png"
        bar_chart(langs, series, "ROUGE-L", f"ROUGE-L: {ds}", path)
        charts.append(path)
        lines += [f"## {ds}", "", "| model | " + " | ".join(langs) + " | mean |",
                  "|---|" + "---:|" * (len(langs) + 1)]
        for r in results:
            mean = r["datasets"].get(ds, {}).get("rouge_l", float("nan"))
            cells = [_cell(v) for v in [*series[r["model"]], mean]]
            lines.append(f"| {r['model']} | " + " | ".join(cells) + " |")
        lines += ["", f"![{ds}]({path.name})", ""]
    (out / f"{name}.md").write_text("\n".join(lines))
    return charts


def _cell(value: float) -> str:
    """A table cell: the score, or "-" where the model has no result (NaN)."""
    return "-" if np.isnan(value) else f"{value:.2f}"


def alignment_report(result: dict, out: Path) -> list[Path]:
    """Table 9: mean cosine of SONAR(english) and SONAR(translation) per language."""
    langs = list(result["per_language"])
    rows = [result["per_language"][lang] for lang in langs]
    path = out / "alignment_pilot.png"
    bar_chart(langs, {"cosine": [r["cosine"] for r in rows]}, "mean cosine",
              "SONAR alignment: eng_Latn vs target language", path)
    lines = ["# Alignment pilot (WikiMatrix)", "", "| language | pairs | mean cosine |",
             "|---|---:|---:|"]
    lines += [f"| {lang} | {r['pairs']} | {r['cosine']:.4f} |" for lang, r in zip(langs, rows)]
    lines += [f"| **mean** | {sum(r['pairs'] for r in rows)} | {result['cosine']:.4f} |", "",
              f"![alignment]({path.name})", ""]
    (out / "alignment_pilot.md").write_text("\n".join(lines))
    return [path]
