"""Exported model folders (`python -m jobs.export`, `Mimir.save_pretrained`), loaded by
`Mimir.from_pretrained` without Ray or DeepSpeed:

  config.json              the format, the Two-Tower config, the weights' dtype, whether the
                           model is instruction-tuned, the SONAR and SaT models to use with
                           it, the generation settings it was evaluated with, the normalizer's
                           origin, the training run (data, steps, start checkpoint), the
                           commit and package versions
  model.safetensors        the Two-Tower weights, float32 or bfloat16
  normalizer.safetensors   the embedding normalizer (mimir_model/normalizer.py's format)
  README.md                a short model card

SONAR (about 3 GB) and SaT are not copied: config.json names them (URIs; override on load).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch
from safetensors.torch import load_file, save_file

from generation.sources import ModelSources, checkpoint_files, sonar_files
from mimir_model.checkpoint import TRAINER_STATE, load_exported_model, read_run_info
from mimir_model.diffusion import SamplerConfig
from mimir_model.framing import END_OF_TEXT, STOP_COSINE
from mimir_model.normalizer import RobustNormalizer
from mimir_model.sonar.config import SonarFiles
from mimir_model.two_tower import TwoTowerConfig, TwoTowerLCM
from storage.cache import sha256_file
from storage.paths import Input, Output

log = logging.getLogger(__name__)

FORMAT = "mimir-two-tower-lcm"
FORMAT_VERSION = 1
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
NORMALIZER = "normalizer.safetensors"
CARD = "README.md"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass
class ExportConfig:
    checkpoint: Input = ""  # a checkpoint or run folder of jobs.pretrain / jobs.finetune
    out: Output = "build/export/mimir"  # the folder to write (local)
    dtype: Literal["float32", "bfloat16"] = "float32"  # of model.safetensors
    # Names to record instead of the checkpoint's (empty: keep them), e.g. the real SONAR URLs
    # when the run read an s3:// mirror only the cluster can reach.
    sonar_encoder: str = ""
    sonar_decoder: str = ""
    sonar_tokenizer: str = ""
    segment_model: str = ""
    cache_dir: Output = "build/cache"  # where remote files are downloaded


def export(cfg: ExportConfig) -> Path:
    """Write the folder for cfg.checkpoint; returns its path."""
    if not cfg.checkpoint:
        raise ValueError("set --checkpoint URI (a checkpoint or run folder)")
    local = checkpoint_files(cfg.checkpoint, cfg.cache_dir)
    info = read_run_info(local)
    sources = ModelSources.from_run_info(info).with_overrides(
        sonar=sonar_files(cfg.sonar_encoder, cfg.sonar_decoder, cfg.sonar_tokenizer),
        segment_model=cfg.segment_model or None)
    state = local / TRAINER_STATE
    info = {**info, "checkpoint": cfg.checkpoint,
            "step": json.loads(state.read_text())["step"] if state.exists() else None}
    normalizer = RobustNormalizer.load(sources.normalizer_file(cfg.cache_dir))
    return write_folder(Path(cfg.out), load_exported_model(local), normalizer, sources, info,
                        cfg.dtype)


def write_folder(out: Path, model: TwoTowerLCM, normalizer: RobustNormalizer,
                 sources: ModelSources, info: dict,
                 dtype: Literal["float32", "bfloat16"] = "float32") -> Path:
    out.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().to("cpu", DTYPES[dtype]).contiguous().clone()
               for k, v in model.state_dict().items()}
    save_file(weights, str(out / WEIGHTS), metadata={"format": FORMAT, "dtype": dtype})
    normalizer.save(out / NORMALIZER)
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, "dtype": dtype,
              "model": asdict(model.cfg), "instruction_tuned": sources.instruction_tuned,
              "sonar": asdict(sources.sonar), "segment_model": sources.segment_model,
              "generation": {"end_of_text": END_OF_TEXT, "stop_cosine": STOP_COSINE,
                             "sampler": asdict(SamplerConfig())},
              "normalizer": {"file": NORMALIZER, "sha256": sha256_file(out / NORMALIZER),
                             "trained_with": {"uri": sources.normalizer,
                                              "sha256": sources.normalizer_sha256}},
              "training": training_record(info),
              "git_commit": info.get("git_commit"), "versions": info.get("versions")}
    (out / CONFIG).write_text(json.dumps(config, indent=2, ensure_ascii=False))
    (out / CARD).write_text(model_card(config))
    log.info("exported %s (%s) to %s", info.get("checkpoint", "the model"), dtype, out)
    return out


def training_record(info: dict) -> dict:
    """What the model card says about training: the checkpoint, its step, the data, the run's
    planned steps and where it started from."""
    job = info.get("job_config", {})
    start = info.get("init_from")
    return {"checkpoint": info.get("checkpoint"), "step": info.get("step"),
            "steps_planned": job.get("train", {}).get("steps"), "run_name": job.get("run_name"),
            "data": info.get("data") or {"kind": job.get("data"), "uri": job.get("shards")},
            "init_from": None if not start else {
                "uri": start.get("uri"), "step": start.get("step"),
                "data": (start.get("run_info") or {}).get("data")}}


def read_folder(directory: Path) -> tuple[TwoTowerLCM, ModelSources, dict]:
    """(model in float32, eval mode; its sources; config.json) of an exported folder."""
    path = directory / CONFIG
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: not a folder written by jobs.export")
    config = json.loads(path.read_text())
    if config.get("format") != FORMAT or config.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"{path}: format {config.get('format')!r} version "
                         f"{config.get('format_version')}, expected {FORMAT} <= {FORMAT_VERSION}")
    model = TwoTowerLCM(TwoTowerConfig(**config["model"]))
    weights = {k: v.float() for k, v in load_file(str(directory / WEIGHTS)).items()}
    model.load_state_dict(weights)
    sources = ModelSources(normalizer=str(directory / NORMALIZER),
                           normalizer_sha256=config["normalizer"]["sha256"],
                           sonar=SonarFiles(**config["sonar"]),
                           segment_model=config["segment_model"],
                           instruction_tuned=config["instruction_tuned"])
    return model.eval(), sources, {**config, "checkpoint": str(directory),
                                   "step": config["training"].get("step")}


def model_card(config: dict) -> str:
    t, s = config["training"], config["sonar"]
    data = t.get("data") or {}
    if data.get("kind") == "shards":
        trained_on = (f"the embedding shards `{data.get('uri')}` (set {data.get('run_id')}, "
                      f"{data.get('documents')} documents"
                      + (f", mixture {data['mixture']}" if data.get("mixture") else "") + ")")
    elif data.get("kind") == "runtime":
        inputs = ", ".join(f"`{i.get('uri')}`" for i in data.get("inputs", []))
        trained_on = f"documents embedded while training from {inputs}"
    else:
        trained_on = "(not recorded)"
    lines = [
        "# Mimir Two-Tower LCM", "",
        "A Large Concept Model (a Two-Tower diffusion LCM) that continues text sentence by "
        "sentence in SONAR's embedding space; any SONAR language in, any SONAR language out.",
        "", "| | |", "|---|---|",
        f"| weights | `{WEIGHTS}` ({config['dtype']}), model dim {config['model']['model_dim']}, "
        f"SONAR dim {config['model']['sonar_dim']} |",
        "| instruction-tuned | " + ("yes: prompts are framed as user turns"
                                   if config["instruction_tuned"] else "no (pre-trained)") + " |",
        f"| SONAR encoder | `{s['encoder']}` |", f"| SONAR decoder | `{s['decoder']}` |",
        f"| SONAR tokenizer | `{s['tokenizer']}` |",
        f"| SaT (sentence splitting) | `{config['segment_model']}` |",
        f"| normalizer | `{NORMALIZER}` (trained with "
        f"`{config['normalizer']['trained_with']['uri']}`) |",
        f"| training data | {trained_on} |",
        f"| steps | {t.get('step')} of {t.get('steps_planned')} (run `{t.get('run_name')}`) |",
    ]
    start = t.get("init_from")
    if start:
        lines.append(f"| started from | `{start['uri']}` (step {start['step']}, data "
                     f"`{(start.get('data') or {}).get('uri')}`) |")
    lines += [
        f"| exported from | `{t.get('checkpoint')}` |",
        f"| code | commit `{config.get('git_commit')}` |", "",
        "Sampler (the paper's): " + ", ".join(f"{k} {v}" for k, v in
                                               config["generation"]["sampler"].items())
        + f"; generation stops at cosine >= {config['generation']['stop_cosine']} with the "
        f"embedding of \"{config['generation']['end_of_text']}\".", "",
        "```python", "from generation import Mimir", "m = Mimir.from_pretrained(\"THIS_FOLDER\")",
        "m.generate([\"A first sentence. A second one.\"], \"eng_Latn\", \"fra_Latn\")[0].text",
        "```", ""]
    return "\n".join(lines)
