"""bench-gpu's command on a CPU (tiny shapes, the samples once): every part runs through the
real code (the run-time part is jobs.pretrain's training.launch.train with data: runtime), and
the figures agree with each other. Nothing here asserts on speed."""

from __future__ import annotations

import json

import pytest

from bench import cpu_budget
from bench.gpu_suite import main as bench_gpu
from bench.runner import ROW_KEYS


def _run(tmp_path, assets, parts: list[str], capsys) -> tuple[dict, dict, str]:
    out = tmp_path / "bench-gpu"
    rc = bench_gpu(["--out", str(out), "--device", "cpu", "--assets", str(assets),
                    "--repeats", "1", "--in-process-repeats", "1", "--only", *parts])
    report = json.loads((out / "results.json").read_text())
    assert {p: s["status"] for p, s in report["parts"].items()} == {p: "ok" for p in parts}
    assert rc == 0
    rows = report["results"]
    assert all(set(r) == set(ROW_KEYS) for r in rows)
    values = {(r["benchmark"], r["metric"]): r["value"] for r in rows}
    return report, values, capsys.readouterr().out


def _check_pipeline(values: dict) -> None:
    # The same SaT over the same documents, in Ray actors and in this process.
    assert values[("runtime", "sentences")] == values[("in_process", "sentences")] > 0
    shares = [v for (part, metric), v in values.items()
              if part == "runtime" and metric.endswith(" share %")]
    assert len(shares) == 8 and sum(shares) == pytest.approx(100)
    ray, alone = (values[("runtime", "sentences/s end to end")],
                  values[("in_process", "sentences/s in-process sum")])
    assert values[("bench_gpu", "ray/in-process")] == pytest.approx(ray / alone)
    assert values[("runtime", "sentences/s with start-up")] <= ray
    assert values[("runtime", "ray/busy sum")] > 0


@pytest.mark.slow  # 190 s of a 28-minute default suite
def test_bench_gpu_on_cpu(tmp_path, cpu_shape_assets, capsys):
    report, values, printed = _run(tmp_path, cpu_shape_assets,
                                   ["assets", "runtime", "in_process", "cpu_budget"], capsys)
    assert values[("assets", "SaT tokens/char")] == pytest.approx(0.2715, rel=0.05)
    _check_pipeline(values)
    steps = [values[("cpu_budget", f"{s} us/sentence")] for s in cpu_budget.ORDER]
    assert all(v > 0 for v in steps)
    assert values[("cpu_budget", "total us/sentence")] == pytest.approx(sum(steps))
    for part in report["parts"]:
        assert part in printed
    assert "ray/in-process" in printed


@pytest.mark.slow
def test_bench_gpu_every_part_on_cpu(tmp_path, cpu_shape_assets, capsys):
    report, values, _ = _run(tmp_path, cpu_shape_assets,
                             ["assets", "sonar_encoder", "two_tower_train", "runtime",
                              "in_process", "cpu_budget"], capsys)
    _check_pipeline(values)
    assert values[("sonar_encoder", "min cosine vs fp32")] >= 0.999
    assert values[("two_tower_train", "embeddings/s")] > 0


def test_a_part_out_of_time_is_named_and_the_others_still_run(tmp_path, cpu_shape_assets):
    out = tmp_path / "bench-gpu"
    rc = bench_gpu(["--out", str(out), "--device", "cpu", "--assets", str(cpu_shape_assets),
                    "--only", "assets", "sonar_encoder", "--cap", "assets=1"])
    report = json.loads((out / "results.json").read_text())
    assert rc == 3
    assert report["parts"]["assets"]["status"] == "timed out"
    assert report["parts"]["sonar_encoder"]["status"] == "ok"
    status = {r["benchmark"]: r["note"] for r in report["results"] if r["metric"] == "status"}
    assert status["assets"].startswith("timed out: ran out of time")
