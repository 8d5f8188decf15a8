"""The demo's headline figures against the record in tests/data/demo_record.json, so that a
dependency (or code) change that changes results fails loudly, with both numbers shown.

Counts must match exactly; losses and distances within a relative tolerance of 1e-4 (CPU
float reductions may differ in the last bits between machines, nothing more: with the same
versions the demo is deterministic).

When a change of results is intended (a model fix, an upgrade through `make lock`), re-record
and commit the file with the change that explains it:

    MIMIR_RECORD_DEMO=1 .venv/bin/python -m pytest tests/test_demo_record.py
"""

from __future__ import annotations

import json
import os
from importlib import metadata
from pathlib import Path

import pytest

from jobs import demo

RECORD = Path(__file__).resolve().parent / "data" / "demo_record.json"
REL_TOL = 1e-4
COUNTS = ("documents", "sentences", "embeddings", "steps")
FLOATS = ("first_loss", "last_loss", "l2", "round_trip_l2")


def headline(metrics: dict) -> dict:
    stages = {c["stage"]: c for c in metrics["corpus"]}
    training, evaluation = metrics["training"], metrics["evaluation"]
    return {"documents": stages["write_shards"]["rows_out"],
            "sentences": stages["segment"]["tally"]["sentences"],
            "embeddings": stages["write_shards"]["tally"]["embeddings"],
            "steps": training["steps"], "first_loss": training["first_loss"],
            "last_loss": training["last_loss"], "l2": evaluation["l2"],
            "round_trip_l2": evaluation["round_trip_l2"]}


def demo_config(assets: Path, out: Path) -> demo.DemoConfig:
    """The shipped demo config with every output under `out` and the session's tiny assets."""
    sonar = assets / "sonar"
    models = [f"segment.model={assets / 'sat'}",
              f"sonar.encoder={sonar / 'sonar_text_encoder.pt'}",
              f"sonar.tokenizer={sonar / 'sentencepiece.model'}"]
    shards, normalizer = out / "shards", out / "normalizer.safetensors"
    return demo.DemoConfig(
        assets=str(assets), report=str(out / "report"), cache_dir=str(out / "cache"),
        overrides={
            "corpus": [f"output={shards}", f"cache_dir={out / 'cache'}", *models],
            "normalizer": [f"shards={shards}", f"output={normalizer}"],
            "pretrain": [f"shards={shards}", f"normalizer={normalizer}",
                         f"storage_path={out / 'checkpoints'}", f"cache_dir={out / 'cache'}"],
            "eval": [f"shards={shards}", f"normalizer={normalizer}",
                     f"output={out / 'eval.json'}", f"cache_dir={out / 'cache'}",
                     f"sonar.encoder={sonar / 'sonar_text_encoder.pt'}",
                     f"sonar.decoder={sonar / 'sonar_text_decoder.pt'}",
                     f"sonar.tokenizer={sonar / 'sentencepiece.model'}"]})


def test_demo_figures_match_the_record(ray_local, tiny_assets, tmp_path):
    got = headline(demo.run(demo_config(tiny_assets, tmp_path)))
    if os.environ.get("MIMIR_RECORD_DEMO") == "1":
        versions = {n: metadata.version(n) for n in ("torch", "ray", "deepspeed", "wtpsplit",
                                                     "transformers", "sentencepiece", "numpy")}
        RECORD.write_text(json.dumps({"figures": got, "recorded_with": versions}, indent=2)
                          + "\n")
        pytest.skip(f"recorded {got} into {RECORD}")
    want = json.loads(RECORD.read_text())["figures"]
    differ = {k: (want[k], got[k]) for k in COUNTS if got[k] != want[k]}
    differ |= {k: (want[k], got[k]) for k in FLOATS
               if abs(got[k] - want[k]) > REL_TOL * abs(want[k])}
    assert differ == {}, (
        f"demo figures differ from {RECORD.name} (recorded, now): {differ}. If the change is "
        "intended, re-record: MIMIR_RECORD_DEMO=1 python -m pytest tests/test_demo_record.py")
