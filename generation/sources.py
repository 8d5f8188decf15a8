"""What a model needs beside its weights, and where a checkpoint's files come from.

A training checkpoint records in run_info.json (mimir_model/checkpoint.py) the normalizer it
was trained with (URI and SHA-256), the SONAR encoder / decoder / tokenizer and the SaT model
its embeddings were made with, and whether it is instruction-tuned; an exported folder
(generation/export.py) records the same in config.json. `ModelSources` is that record, with
the caller's overrides applied. `checkpoint_files` brings only the files generation reads
(not DeepSpeed's optimizer state) from a local or s3:// checkpoint, checking model.pt against
the checksum rank 0's manifest gives it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import storage
from mimir_model.checkpoint import (FOLDER_PREFIX, MODEL_CONFIG, MODEL_FILE, RUN_INFO,
                                    TRAINER_STATE, latest_checkpoint, manifest_file)
from mimir_model.sonar.config import SonarFiles
from storage.cache import default_cache_dir, fetch, sha256_file

log = logging.getLogger(__name__)

# What generation reads from a training checkpoint (the rest is DeepSpeed's training state).
GENERATION_FILES = (MODEL_FILE, MODEL_CONFIG, RUN_INFO, TRAINER_STATE, manifest_file(0))


@dataclass
class ModelSources:
    normalizer: str  # URI of the normalizer the model was trained with
    sonar: SonarFiles = field(default_factory=SonarFiles)  # encoder, decoder and tokenizer
    segment_model: str = ""  # the SaT model (Hub id, folder or s3:// prefix)
    instruction_tuned: bool = False  # prompts are framed as user turns (mimir_model/framing)
    normalizer_sha256: str | None = None  # as recorded at training time, checked on load

    @classmethod
    def from_run_info(cls, info: dict) -> ModelSources:
        models = info.get("models", {})
        sonar = models.get("sonar") or {}
        return cls(normalizer=info["normalizer"]["uri"],
                   normalizer_sha256=info["normalizer"].get("sha256"),
                   sonar=SonarFiles(**{k: sonar[k] for k in ("encoder", "decoder", "tokenizer")
                                       if k in sonar}),
                   segment_model=models.get("segment_model", ""),
                   instruction_tuned=bool(info.get("instruction_tuned", False)))

    def with_overrides(self, normalizer: str | None = None,
                       sonar: SonarFiles | dict[str, str] | None = None,
                       segment_model: str | None = None,
                       instruction_tuned: bool | None = None) -> ModelSources:
        """These sources with the given ones in place of the recorded ones: `sonar` replaces
        all three SONAR files, or as a mapping ({"decoder": URI}) those it names. A normalizer
        given here is not checked against the recorded checksum."""
        out = replace(self)
        if normalizer is not None:
            out.normalizer, out.normalizer_sha256 = normalizer, None
        if isinstance(sonar, SonarFiles):
            out.sonar = sonar
        elif sonar:
            out.sonar = replace(self.sonar, **sonar)
        if segment_model is not None:
            out.segment_model = segment_model
        if instruction_tuned is not None:
            out.instruction_tuned = instruction_tuned
        return out

    def normalizer_file(self, cache_dir: str | Path | None) -> Path:
        """The normalizer's local file, after checking it is the one the model was trained
        with (when the checkpoint recorded its checksum)."""
        path = fetch(self.normalizer, cache_dir)
        if self.normalizer_sha256 and sha256_file(path) != self.normalizer_sha256:
            raise ValueError(f"normalizer {self.normalizer} is not the one the model was trained "
                             f"with (SHA-256 {self.normalizer_sha256}): it changed since; pass "
                             "the right one (normalizer=...)")
        return path


def resolve_checkpoint(uri: str) -> str:
    """`uri` itself if it is a checkpoint folder, or the newest complete checkpoint of a run
    folder (one holding checkpoint_* folders, as Ray Train writes them)."""
    fs, path = storage.resolve(uri)
    if storage.exists(fs, storage.join(path, MODEL_FILE)):
        return uri
    parent, _, name = uri.rstrip("/").rpartition("/")
    latest = latest_checkpoint(parent or ".", name) if name else None
    if latest is None:
        raise FileNotFoundError(f"{uri} is neither a checkpoint folder (no {MODEL_FILE}) nor a "
                                f"run folder with complete {FOLDER_PREFIX}* checkpoints")
    log.info("newest checkpoint of %s: %s", uri, latest)
    return latest


def checkpoint_files(uri: str, cache_dir: str | Path | None = None) -> Path:
    """A local folder with the generation files of the checkpoint at `uri` (a checkpoint or
    run folder, local or s3://). model.pt must match rank 0's manifest when there is one."""
    uri = resolve_checkpoint(uri)
    if storage.is_remote(uri):
        fs, path = storage.resolve(uri)
        local = (Path(cache_dir) if cache_dir else default_cache_dir()) / (
            "checkpoint-" + hashlib.sha256(uri.encode()).hexdigest()[:16])
        local.mkdir(parents=True, exist_ok=True)
        for name in GENERATION_FILES:  # each is downloaded once, into a cache folder of its own
            if storage.exists(fs, storage.join(path, name)) and not (local / name).exists():
                (local / name).symlink_to(fetch(storage.join(uri, name), cache_dir))
    else:
        local = Path(uri)
    manifest = local / manifest_file(0)
    if manifest.exists():
        digest = json.loads(manifest.read_text())["files"].get(MODEL_FILE)
        if digest and sha256_file(local / MODEL_FILE) != digest:
            raise ValueError(f"checkpoint {uri}: {MODEL_FILE} does not match its checksum "
                             "(truncated or corrupted)")
    return local


def sonar_files(encoder: str = "", decoder: str = "", tokenizer: str = "") -> dict[str, str]:
    """The SONAR files a job's config names (empty: keep the recorded one), as an override."""
    given = {"encoder": encoder, "decoder": decoder, "tokenizer": tokenizer}
    return {k: v for k, v in given.items() if v}
