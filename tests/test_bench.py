"""Benchmark runner and the Two-Tower FLOP count. Nothing here asserts on speed."""

import json
import re

import pytest
import torch
from torch import nn

from bench import runner as bench
from bench import two_tower as bench_two_tower
from jobs.bench import main as bench_main
from bench.two_tower import TorchEngine, random_batch
from mimir_model.flops import matmul_weights, train_flops
from mimir_model.diffusion import NoiseSchedule
from mimir_model.train import TrainConfig, build_model, train_step
from mimir_model.two_tower import TwoTowerConfig, TwoTowerLCM, preset

SMALL = TwoTowerConfig(sonar_dim=8, model_dim=16, num_heads=2, context_layers=1,
                       denoiser_layers=1, ffn_inner_dim=32, timestep_dim=8)


def test_train_flops_by_hand():
    # Per position: context_in 8*16 = 128; context layer: attention 4*16*16 = 1024 + SwiGLU
    # 3*16*32 = 1536 -> context 2688. Denoiser: in 128, time embedding 8*16 + 16*16 = 384,
    # layer = self-attention 1024 + cross Q,O 512 + SwiGLU 1536 + modulator 9*256 = 2304 -> 5376,
    # out 128 -> 6016. Per key: cross K,V 2*256 = 512.
    assert matmul_weights(SMALL) == (2688 + 6016, 512)
    # B=2, T=4. Matmuls: 2 * (8704 * 4 + 512 * 5) = 74,752 per sequence.
    # Attention: 4 * 16 * (1*4*4 + 1*(4*4 + 4*5)) = 64 * 52 = 3,328 per sequence.
    # Training = 3 x forward: 3 * 2 * (74,752 + 3,328) = 468,480.
    assert train_flops(SMALL, batch=2, seq_len=4) == 468_480


def test_matmul_weights_are_every_linear_weight():
    for cfg in (SMALL, preset("tiny")):
        model = TwoTowerLCM(cfg)
        linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
        assert sum(matmul_weights(cfg)) == linear


def test_1_6b_costs_about_10_gflop_per_embedding():
    # DESIGN.md section 3: "training ~10 GFLOP" per sentence; 6 x 1.64B weights + attention.
    per_embedding = train_flops(preset("1.6B"), 56, 128) / (56 * 128)
    assert round(per_embedding / 1e6) == 9971


def test_torch_engine_trains_through_train_step():
    """The plain-PyTorch stand-in for hosts without DeepSpeed: AdamW groups as build_engine's,
    and train_step's loop lowers the loss on a fixed batch."""
    torch.manual_seed(0)
    cfg = TrainConfig(model="tiny", model_overrides={"dropout": 0.0}, lr=3e-3)
    engine = TorchEngine(build_model(cfg, 16), cfg, torch.device("cpu"))
    decay, no_decay = engine.optimizer.param_groups
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.1, 0.0)
    assert all(p.dim() >= 2 for p in decay["params"])
    assert all(p.dim() < 2 for p in no_decay["params"])
    batch = random_batch(4, 6, 16)
    schedule, g = NoiseSchedule(), torch.Generator()
    losses = []
    for step in range(12):
        g.manual_seed(step % 2)  # two fixed noise draws, so the loss can only fall by learning
        losses.append(train_step(engine, schedule, batch, g)[0])
    assert losses[-2] < losses[0] and losses[-1] < losses[1]


def test_table_is_fixed_width_with_numbered_notes():
    rows = [{"benchmark": "b", "config": "c1", "device": "cpu", "metric": "embeddings/s",
             "value": 12345.678, "note": ""},
            {"benchmark": "b", "config": "longer config", "device": "cpu", "metric": "x",
             "value": 0.5, "note": "half"},
            {"benchmark": "b", "config": "c3", "device": "cpu", "metric": "compile",
             "value": None, "note": "skipped"}]
    assert bench.format_table(rows).splitlines() == [
        "benchmark  config         device  metric           value",
        "---------  -------------  ------  ------------  --------",
        "b          c1             cpu     embeddings/s  12,345.7",
        "b          longer config  cpu     x                0.500  [1]",
        "b          c3             cpu     compile              -  [2]",
        "[1] half",
        "[2] skipped",
    ]


def test_quick_run_writes_json(tmp_path, monkeypatch, capsys):
    # The CPU path with only the tiny shape, to keep the test short on any host.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(bench_two_tower, "CPU_SHAPES", bench_two_tower.CPU_SHAPES[:1])
    out = tmp_path / "bench" / "results.json"
    bench_main(["--only", "two_tower_train", "--quick", "--out", str(out)])
    data = json.loads(out.read_text())
    assert set(data) == {"environment", "quick", "benchmarks", "results"}
    assert data["quick"] is True
    assert {"date", "torch", "device", "cpu_count"} <= set(data["environment"])
    assert list(data["benchmarks"]) == ["two_tower_train"]
    rows = data["results"]
    assert all(set(r) == set(bench.ROW_KEYS) for r in rows)
    by_metric = {r["metric"]: r for r in rows}
    assert set(by_metric) == {"GFLOP/embedding", "step_ms", "embeddings/s", "GFLOP/s", "compile"}
    eager = by_metric["embeddings/s"]
    assert eager["config"] == "tiny b8x128 fp32 eager deepspeed" and eager["value"] > 0
    assert by_metric["GFLOP/embedding"]["value"] == pytest.approx(
        train_flops(preset("tiny"), 8, 128) / (8 * 128) / 1e9)
    assert by_metric["compile"]["note"] == "skipped: --quick"
    assert "tiny b8x128 fp32 eager deepspeed" in capsys.readouterr().out


def test_end_to_end_bench_rows_add_up(tmp_path):
    """The pipeline's own stages run over the samples; the figures are consistent with each
    other (speed itself is not asserted)."""
    results = bench.run(["end_to_end"], quick=True, out=tmp_path / "e2e.json")
    rows = {r["metric"]: r for r in results["results"]}
    assert rows["one device sentences/s"]["config"] == "94 docs, 562 sentences"
    shares = [rows[f"{s} share %"]["value"] for s in ("segment", "embed", "train")]
    assert sum(shares) == pytest.approx(100)
    rates = [rows[f"{s} sentences/s"]["value"] for s in ("segment", "embed", "train")]
    # One device runs the stages in turn: its time per sentence is the stages' sum.
    assert rows["one device sentences/s"]["value"] == pytest.approx(1 / sum(1 / r for r in rates))
    assert rows["bottleneck stage sentences/s"]["value"] == pytest.approx(min(rates))
    assert json.loads((tmp_path / "e2e.json").read_text())["results"] == results["results"]


@pytest.mark.slow
def test_serving_bench_rows_add_up(tmp_path):
    """The Serve app over HTTP and the Python API on the same prompts (about 60 s); the
    figures agree with each other and Serve batched concurrent requests."""
    results = bench.run(["serving"], quick=True, out=tmp_path / "serving.json")
    rows = {r["metric"]: r for r in results["results"]}
    assert set(rows) == {"serve requests/s", "serve p50 latency ms", "serve p99 latency ms",
                         "api prompts/s", "api p50 latency ms", "api p99 latency ms",
                         "serve / api throughput"}
    assert {r["config"] for r in rows.values()} == {"16 prompts, concurrency 8, 1 replica"}
    assert rows["serve / api throughput"]["value"] == pytest.approx(
        rows["serve requests/s"]["value"] / rows["api prompts/s"]["value"])
    for side in ("serve", "api"):
        p50, p99 = (rows[f"{side} {q} latency ms"]["value"] for q in ("p50", "p99"))
        assert 0 < p50 <= p99
    largest = int(re.search(r"largest Serve batch (\d+)", rows["serve requests/s"]["note"])[1])
    assert 1 < largest <= 8
