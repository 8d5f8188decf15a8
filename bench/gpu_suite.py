"""bench-gpu: the one prepared measurement for a GPU host (`make bench-gpu OUT=DIR`,
`python -m jobs.bench_gpu --out DIR`). README "Benchmarks on a GPU node" says how to run it.

Parts, in order, each in a subprocess of its own with its own time cap (and all within
--budget-s), so that a part that fails or runs out of time still leaves the others' figures;
each part writes its rows as it makes them (OUT/parts/PART.jsonl), so a part cut off keeps the
rows it had:

    assets           the full-shape offline models (offline_assets/full_shape.py; on a CPU the
                     "cpu" shape: real tokenizers and vocabularies, tiny widths), reused when
                     OUT/assets (or --assets) already has them; tokens per character
    sonar_encoder    bench/sonar_encoder.py on the full-shape encoder file: sentences/s of the
                     naive, sorted, packed and compiled paths on a realistic length mix, and
                     the packed paths' agreement with the padded float32 path
    two_tower_train  bench/two_tower.py: one 1.6B training step under DeepSpeed bf16, eager and
                     compiled, embeddings/s, MFU, peak memory (tiny on a CPU)
    runtime          bench/runtime_pipeline.py: jobs.pretrain's code with data: runtime, the
                     shipped samples repeated to a fixed volume (--repeats)
    in_process       the same stages one after the other in one process (--in-process-repeats)
    cpu_budget       bench/cpu_budget.py: the data path's CPU cost per sentence, models taken out

Around every part the parent samples the GPU (nvidia-smi: utilisation, memory used by all
processes) and adds its mean utilisation and memory high-water mark; it then adds the ratio of
the run-time pipeline's throughput to the in-process sum. The table (bench/runner.py's format)
is printed and, with every part's status, written to OUT/results.json. On a CPU the same
command runs at tiny shapes and a small volume (tests/test_bench_gpu.py runs it).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)

NAME = "bench_gpu"
PARTS = ("assets", "sonar_encoder", "two_tower_train", "runtime", "in_process", "cpu_budget")
# Seconds per part. GPU: 480 s in all (the 8 minutes on one H100/H200).
CAPS = {"cuda": {"assets": 80, "sonar_encoder": 80, "two_tower_train": 120, "runtime": 130,
                 "in_process": 45, "cpu_budget": 25},
        "cpu": {"assets": 300, "sonar_encoder": 300, "two_tower_train": 300, "runtime": 600,
                "in_process": 300, "cpu_budget": 300}}
REPEATS = {"cuda": (400, 50), "cpu": (2, 2)}  # (runtime, in-process) copies of the samples
GOALS = {"sentences/s end to end": "goal >= 10,000 per H100; the paper about 1,400 per A100",
         "ray/in-process": "goal >= 0.7 (Ray overhead under 30%)"}


@dataclass
class Context:
    out: str
    device: str  # cuda | cpu
    assets: str
    repeats: int
    in_process_repeats: int

    @property
    def shape(self) -> str:
        return "full" if self.device == "cuda" else "cpu"


class RowLog(list):
    """Rows of one part, each also appended to a JSON-lines file as soon as it is made."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def append(self, row: dict) -> None:
        super().append(row)
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")


# ----------------------------------------------------------------------------- the parts


def _rows_for(part: str, ctx: Context, log_rows: RowLog, config: str = ""):
    device = ctx.device

    def row(metric: str, value, note: str = "", cfg: str | None = None) -> None:
        log_rows.append({"benchmark": part, "config": cfg if cfg is not None else config,
                         "device": device, "metric": metric,
                         "value": None if value is None else float(value), "note": note})
    return row


def _part_assets(ctx: Context, rows: RowLog) -> None:
    import sentencepiece as spm
    from offline_assets.full_shape import (XLMR_TOKENS_PER_CHAR, build_full_shape,
                                           fineweb_sample_texts, tokens_per_char)
    out = Path(ctx.assets)
    if (out / "sonar" / "sonar_text_encoder.pt").exists() and not (out / "ASSETS.json").exists():
        row = _rows_for("assets", ctx, rows, "given (real weights?)")
        row("build s", None, f"{out} holds models this project did not build: used as they are")
    else:
        row = _rows_for("assets", ctx, rows, f"{ctx.shape} shape")
        t0 = time.perf_counter()
        build_full_shape(out, shape=ctx.shape)
        stamp = json.loads((out / "ASSETS.json").read_text())
        took = time.perf_counter() - t0
        reused = took < 0.5 * stamp.get("seconds", 0)
        row("build s", stamp.get("seconds"), f"reused (checked in {took:.1f} s)" if reused
            else "goal < 120 on the GPU host")
    row("size GB", sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 1e9)
    texts = fineweb_sample_texts()
    for name, path in (("SaT", out / "sat" / "sentencepiece.bpe.model"),
                       ("SONAR", out / "sonar" / "sentencepiece.model")):
        if not path.exists():
            continue
        sp = spm.SentencePieceProcessor(model_file=str(path))
        ours = tokens_per_char(lambda t: len(sp.encode(t)), texts)
        row(f"{name} tokens/char", ours, f"XLM-R {XLMR_TOKENS_PER_CHAR} on the same samples: "
            f"{100 * (ours / XLMR_TOKENS_PER_CHAR - 1):+.1f}%; {sp.get_piece_size():,} pieces")


def _part_sonar_encoder(ctx: Context, rows: RowLog) -> None:
    from bench import sonar_encoder
    n = 32_768 if ctx.device == "cuda" else 256
    before = len(rows)
    sonar_encoder.run(quick=ctx.device == "cpu",
                      encoder_path=str(Path(ctx.assets) / "sonar" / "sonar_text_encoder.pt"),
                      n=n, rows=rows)
    _peak_row(ctx, rows, "sonar_encoder", before)


def _part_two_tower(ctx: Context, rows: RowLog) -> None:
    from bench import two_tower
    before = len(rows)
    two_tower.run(quick=True, rows=rows, cpu_shapes=two_tower.CPU_SHAPES[:1])
    _peak_row(ctx, rows, "two_tower_train", before)


def _peak_row(ctx: Context, rows: RowLog, part: str, before: int) -> None:
    import torch
    if ctx.device == "cuda" and not any(r["metric"] == "peak_mem_GB" for r in rows[before:]):
        _rows_for(part, ctx, rows)("peak_mem_GB", torch.cuda.max_memory_allocated() / 2**30,
                                   "torch.cuda.max_memory_allocated, this process")


def _prepare(ctx: Context, repeats: int):
    """Inputs of `repeats` copies, the job config and its normalizer (fitted once)."""
    from bench import runtime_pipeline as rp
    work = Path(ctx.out) / "work"
    inputs = rp.write_inputs(work / f"inputs-x{repeats}", repeats)
    normalizer = work / "normalizer.safetensors"
    cfg = rp.job_config(ctx.device, Path(ctx.assets), work, inputs, normalizer)
    if not normalizer.exists():
        rp.fit_normalizer(cfg, rp.documents(inputs[:1]), normalizer)
    return cfg, inputs


def _part_runtime(ctx: Context, rows: RowLog) -> None:
    from bench import runtime_pipeline as rp
    from jobkit.cluster import init_ray
    cfg, _ = _prepare(ctx, ctx.repeats)
    shutil.rmtree(Path(cfg.storage_path) / cfg.run_name, ignore_errors=True)  # no resume
    init_ray(object_store_mb=4096 if ctx.device == "cuda" else 512)
    rp.run_runtime(cfg, _rows_for("runtime", ctx, rows,
                                  f"{ctx.repeats}x samples, {cfg.train.model}"))


def _part_in_process(ctx: Context, rows: RowLog) -> None:
    from bench import runtime_pipeline as rp
    cfg, inputs = _prepare(ctx, ctx.in_process_repeats)
    rp.run_in_process(cfg, rp.documents(inputs), _rows_for(
        "in_process", ctx, rows, f"{ctx.in_process_repeats}x samples, {cfg.train.model}"))


def _part_cpu_budget(ctx: Context, rows: RowLog) -> None:
    from bench import cpu_budget
    from jobkit.cluster import init_ray
    cfg, inputs = _prepare(ctx, ctx.in_process_repeats)
    init_ray(local_cpus=2)
    sentences, seconds = cpu_budget.measure(cfg, inputs)
    row = _rows_for("cpu_budget", ctx, rows, f"{ctx.shape}-shape tokenizers, 1 thread")
    for metric, value, note in cpu_budget.rows(sentences, seconds):
        row(metric, value, note)


RUNNERS = {"assets": _part_assets, "sonar_encoder": _part_sonar_encoder,
           "two_tower_train": _part_two_tower, "runtime": _part_runtime,
           "in_process": _part_in_process, "cpu_budget": _part_cpu_budget}


def run_part(part: str, ctx: Context) -> None:
    rows = RowLog(Path(ctx.out) / "parts" / f"{part}.jsonl")
    RUNNERS[part](ctx, rows)


# ----------------------------------------------------------------------------- the parent


class GpuSampler:
    """nvidia-smi every `period` s in a thread: utilisation % and memory used (all processes).
    Unavailable (no nvidia-smi, no GPU): no samples."""

    def __init__(self, period: float = 0.5) -> None:
        self.period, self.samples = period, []
        self.cmd = shutil.which("nvidia-smi")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                out = subprocess.run(
                    [self.cmd, "--query-gpu=utilization.gpu,memory.used",
                     "--format=csv,noheader,nounits"], capture_output=True, text=True,
                    timeout=5).stdout.splitlines()[0]
                util, mem = (float(x) for x in out.split(","))
                self.samples.append((util, mem))
            except Exception:  # degrade: a missing sample is only a missing sample
                pass
            self._stop.wait(self.period)

    def __enter__(self) -> "GpuSampler":
        if self.cmd:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self.cmd:
            self._thread.join(timeout=10)


def _child_env(device: str) -> dict[str, str]:
    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_AUTH_MODE": "disabled",
           "TOKENIZERS_PARALLELISM": "false", "DS_BUILD_OPS": "0",
           "DS_ACCELERATOR": "cuda" if device == "cuda" else "cpu",
           "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def _status_row(part: str, device: str, status: str, seconds: float, note: str) -> dict:
    return {"benchmark": part, "config": "", "device": device, "metric": "status",
            "value": seconds, "note": f"{status}: {note}" if note else status}


def run_suite(ctx: Context, parts: list[str], budget_s: float,
              caps: dict[str, float]) -> dict:
    out = Path(ctx.out)
    (out / "parts").mkdir(parents=True, exist_ok=True)
    (out / "context.json").write_text(json.dumps(asdict(ctx)))
    start = time.monotonic()
    results: list[dict] = []
    summary: dict[str, dict] = {}
    for part in parts:
        (out / "parts" / f"{part}.jsonl").unlink(missing_ok=True)
        left = budget_s - (time.monotonic() - start)
        cap = min(caps[part], left)
        if left < 5:
            results.append(_status_row(part, ctx.device, "skipped", 0.0,
                                       f"the {budget_s:.0f} s budget was spent"))
            summary[part] = {"status": "skipped", "seconds": 0.0, "cap": cap}
            continue
        log.info("bench-gpu part %s (cap %.0f s)", part, cap)
        t0 = time.monotonic()
        logfile = out / "parts" / f"{part}.log"
        with GpuSampler() as gpu, logfile.open("w") as lf:
            proc = subprocess.Popen([sys.executable, "-m", "bench.gpu_suite", "--part", part,
                                     "--context", str(out / "context.json")],
                                    stdout=lf, stderr=subprocess.STDOUT,
                                    env=_child_env(ctx.device), start_new_session=True)
            try:
                rc = proc.wait(timeout=cap)
                status = "ok" if rc == 0 else "failed"
                note = "" if rc == 0 else f"exit {rc}; {_tail(logfile)}"
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                status, note = "timed out", f"ran out of time at its cap of {cap:.0f} s"
        seconds = time.monotonic() - t0
        rows = _read_rows(out / "parts" / f"{part}.jsonl")
        results += rows
        if gpu.samples:
            util = [u for u, _ in gpu.samples]
            results.append({"benchmark": part, "config": "nvidia-smi", "device": ctx.device,
                            "metric": "GPU util % mean", "value": sum(util) / len(util),
                            "note": f"max {max(util):.0f}, {len(util)} samples"})
            results.append({"benchmark": part, "config": "nvidia-smi", "device": ctx.device,
                            "metric": "GPU memory high-water GB",
                            "value": max(m for _, m in gpu.samples) / 1024,
                            "note": "all processes on the GPU"})
        results.append(_status_row(part, ctx.device, status, seconds, note))
        summary[part] = {"status": status, "seconds": round(seconds, 1), "cap": cap,
                         "log": str(logfile)}
        log.info("part %s: %s in %.0f s", part, status, seconds)
    results += _derived(results, ctx.device)
    from bench.runner import environment
    report = {"environment": environment(), "context": asdict(ctx), "parts": summary,
              "seconds": round(time.monotonic() - start, 1), "results": results}
    (out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def _derived(results: list[dict], device: str) -> list[dict]:
    def value(part: str, metric: str):
        return next((r["value"] for r in results
                     if r["benchmark"] == part and r["metric"] == metric), None)

    ray = value("runtime", "sentences/s end to end")
    alone = value("in_process", "sentences/s in-process sum")
    out = []
    if ray and alone:
        out.append({"benchmark": NAME, "config": "runtime / in_process", "device": device,
                    "metric": "ray/in-process", "value": ray / alone,
                    "note": GOALS["ray/in-process"]})
    if ray:
        out.append({"benchmark": NAME, "config": "runtime", "device": device,
                    "metric": "sentences/s end to end", "value": ray,
                    "note": GOALS["sentences/s end to end"] if device == "cuda"
                    else "CPU, tiny shapes: compare ratios only"})
    return out


def _read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut off by the time cap
            pass
    return rows


def _tail(path: Path, n: int = 300) -> str:
    lines = [x for x in path.read_text(errors="replace").splitlines() if x.strip()]
    return " | ".join(lines[-3:])[-n:]


def _kill_group(proc: subprocess.Popen) -> None:
    """Ends the part's process group (it started it: its Ray, actors and workers included)."""
    import signal
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=10)
            return
        except subprocess.TimeoutExpired:
            continue


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="the output folder (results.json, parts/)")
    parser.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    parser.add_argument("--assets", type=Path, default=None,
                        help="where the full-shape assets are or go (default OUT/assets)")
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--repeats", type=int, default=None,
                        help="copies of the shipped samples for the run-time pipeline")
    parser.add_argument("--in-process-repeats", type=int, default=None)
    parser.add_argument("--budget-s", type=float, default=None,
                        help="all parts together (default the sum of the caps)")
    parser.add_argument("--cap", action="append", default=[], metavar="PART=SECONDS")
    parser.add_argument("--part", help=argparse.SUPPRESS)
    parser.add_argument("--context", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from jobkit.cli import setup_logging
    setup_logging()
    if args.part:  # a child: one part
        run_part(args.part, Context(**json.loads(Path(args.context).read_text())))
        return 0
    if args.out is None:
        parser.error("--out DIR is required")
    import torch
    device = args.device if args.device != "auto" else (
        "cuda" if torch.cuda.is_available() else "cpu")
    repeats, in_process = REPEATS[device]
    out = args.out.resolve()
    ctx = Context(str(out), device, str((args.assets or out / "assets").resolve()),
                  args.repeats or repeats, args.in_process_repeats or in_process)
    caps = dict(CAPS[device])
    for item in args.cap:
        part, _, seconds = item.partition("=")
        caps[part] = float(seconds)
    report = run_suite(ctx, args.only, args.budget_s or sum(caps[p] for p in args.only), caps)
    from bench.runner import format_table
    env = report["environment"]
    print(f"{env['date']}  torch {env['torch']}  {env['device']}  {env['cpu_count']} CPUs  "
          f"bench-gpu in {report['seconds']:.0f} s")
    print(format_table(report["results"]))
    print(f"wrote {out / 'results.json'}")
    return 0 if all(p["status"] == "ok" for p in report["parts"].values()) else 3


if __name__ == "__main__":
    sys.exit(main())
