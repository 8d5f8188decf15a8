"""A tiny untrained Two-Tower checkpoint in the training checkpoint's format, for the tests and
benchmarks of generation and serving: random weights (seeded), a normalizer fitted on the tiny
SONAR embeddings of the shipped sample texts, and a run_info.json naming the tiny SONAR and
SaT assets, written by the checkpoint module's own writer (mimir_model/checkpoint.py). Only
the DeepSpeed training state is missing, which generation never reads.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import torch

from jobkit.provenance import provenance
from mimir_model.checkpoint import TRAINER_STATE, export_model, manifest_file
from mimir_model.framing import END_OF_TEXT
from mimir_model.normalizer import RobustNormalizer
from mimir_model.sonar.config import SonarFiles
from mimir_model.sonar.pipeline import TextEncoder
from mimir_model.train import TrainConfig
from mimir_model.two_tower import TwoTowerLCM, preset
from offline_assets.sonar import DECODER_FILE, ENCODER_FILE, TOKENIZER_FILE
from offline_assets.tiny import sample_texts
from storage.cache import sha256_file

log = logging.getLogger(__name__)

NORMALIZER_FILE = "normalizer.safetensors"


def build_tiny_checkpoint(out: Path, assets: Path, instruction_tuned: bool = False,
                          seed: int = 0) -> Path:
    """Write the checkpoint folder `out` (and its normalizer beside it, in `out`) for the tiny
    assets in `assets` (offline_assets/tiny.py)."""
    out.mkdir(parents=True, exist_ok=True)
    sonar = SonarFiles(encoder=str(assets / "sonar" / ENCODER_FILE),
                       decoder=str(assets / "sonar" / DECODER_FILE),
                       tokenizer=str(assets / "sonar" / TOKENIZER_FILE))
    encoder = TextEncoder.from_uris(sonar.encoder, sonar.tokenizer)
    texts = [t[:200] for t in sample_texts()[:200]] + [END_OF_TEXT]
    normalizer = RobustNormalizer().fit([encoder.encode(texts, "eng_Latn")])
    normalizer.save(out / NORMALIZER_FILE)
    torch.manual_seed(seed)
    model = TwoTowerLCM(preset("tiny", sonar_dim=encoder.dim)).eval()
    train = TrainConfig(model="tiny", steps=0)
    info = {"job_config": {"run_name": "tiny-untrained", "data": "shards", "shards": "",
                           "train": asdict(train)},
            "model_config": asdict(model.cfg),
            "normalizer": {"uri": str(out / NORMALIZER_FILE),
                           "sha256": sha256_file(out / NORMALIZER_FILE)},
            "models": {"sonar": asdict(sonar), "segment_model": str(assets / "sat")},
            "data": {"kind": "none", "note": "random weights, never trained"},
            "instruction_tuned": instruction_tuned, "init_from": None, **provenance()}
    export_model(SimpleNamespace(module=model, global_rank=0), out, train, info)
    (out / TRAINER_STATE).write_text(json.dumps({"step": 0}))
    files = {p.name: sha256_file(p) for p in sorted(out.iterdir())
             if p.is_file() and p.name != manifest_file(0)}
    (out / manifest_file(0)).write_text(json.dumps({"world": 1, "files": files}, indent=2))
    log.info("tiny untrained checkpoint in %s", out)
    return out
