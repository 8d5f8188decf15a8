"""The checkpoint format, in one place: what a training checkpoint folder holds, how it is
written, verified, read and found, and what it records as trained.

A checkpoint folder (local, or uploaded by Ray Train to a local or s3:// storage path):
  state/...                 DeepSpeed's model, optimizer and LR-schedule files (tag "state")
  model.pt, model_config.json, train_config.json
                            plain float32 weights (whole, whatever the ZeRO stage) and configs
                            (rank 0): what generation and evaluation load, without DeepSpeed
  run_info.json             what the run needs and was made with (rank 0): the job's effective
                            config, the normalizer (URI, SHA-256), the SONAR and SaT models,
                            whether it is instruction-tuned, the merged DeepSpeed config, the
                            git commit and package versions
  trainer_state.json        {"step": ...}                                   (rank 0)
  train_log.jsonl           the loss history, one JSON object per step     (rank 0)
  worker_rank{r}.pt         rank r's data position, RNG states and, in run-time mode, the keys
                            of the documents it has fully trained (`doc_key`, 8 bytes each)
  files_rank{r}.json        rank r's manifest: {"world", "files": {path: sha256},
                            "sizes": {path: bytes}}, written last

A folder is complete when every rank's manifest is there and every file they list exists with
its size (`complete`, decided from a listing); `verify_checkpoint` also checks the checksums.
Loading never runs code from the files: DeepSpeed's states are read with torch's weights-only
unpickler, which allows tensors and the few DeepSpeed classes its states hold (the manifests,
stored beside the files, authenticate nothing). A checkpoint that fails any of this raises
CheckpointRejected; the training job marks it rejected (`reject`, a rejected.json in the
folder) and resumes from the newest one that passes.
No Ray here: jobs decide where checkpoints go.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow.fs as pafs
import torch

import storage
from storage.cache import sha256_file
from mimir_model.two_tower import TwoTowerConfig, TwoTowerLCM

log = logging.getLogger(__name__)

DEEPSPEED_TAG = "state"
MODEL_FILE = "model.pt"
MODEL_CONFIG = "model_config.json"
TRAIN_CONFIG = "train_config.json"
RUN_INFO = "run_info.json"
TRAINER_STATE = "trainer_state.json"
TRAIN_LOG = "train_log.jsonl"
WORKER_PREFIX = "worker_rank"
MANIFEST_PREFIX = "files_rank"
FOLDER_PREFIX = "checkpoint_"  # how Ray Train names the folders (by time, so they sort)
REJECTED = "rejected.json"  # written by `reject`


class CheckpointRejected(ValueError):
    """A checkpoint that is incomplete, corrupted or holds more than tensors and states."""


def worker_file(rank: int) -> str:
    return f"{WORKER_PREFIX}{rank}.pt"


def manifest_file(rank: int) -> str:
    return f"{MANIFEST_PREFIX}{rank}.json"


# ---- documents trained ---------------------------------------------------------------------

def doc_key(doc_id: str) -> int:
    """A document id's 64-bit key (signed, to live in an int64 tensor). Collisions are
    negligible below billions of documents (birthday bound: about n^2 / 2^65)."""
    return int.from_bytes(hashlib.blake2b(doc_id.encode(), digest_size=8).digest(), "little",
                          signed=True)


def doc_keys(ids: list[str]) -> np.ndarray:
    return np.fromiter((doc_key(i) for i in ids), dtype=np.int64, count=len(ids))


# ---- writing -------------------------------------------------------------------------------

def save_checkpoint(engine, directory: Path, state: dict, history: list[dict],
                    worker: dict) -> None:
    """Every rank writes its part into its own `directory` (DeepSpeed's model and optimizer
    files, and `worker`: this rank's data position and RNG states), then, last, a manifest
    of those files with their checksums. Rank 0 adds the training state and loss history."""
    rank, world = engine.global_rank, engine.world_size
    engine.save_checkpoint(str(directory), tag=DEEPSPEED_TAG, client_state=state)
    torch.save(worker, directory / worker_file(rank))
    if rank == 0:
        with open(directory / TRAIN_LOG, "w") as f:
            f.writelines(json.dumps(h) + "\n" for h in history)
        (directory / TRAINER_STATE).write_text(json.dumps(state, indent=2))
    # Each rank writes into a folder of its own (Ray Train merges them on upload), so
    # everything here but other manifests is this rank's.
    paths = [p for p in sorted(directory.rglob("*"))
             if p.is_file() and not p.name.startswith(MANIFEST_PREFIX)]
    files = {str(p.relative_to(directory)): sha256_file(p) for p in paths}
    sizes = {str(p.relative_to(directory)): p.stat().st_size for p in paths}
    (directory / manifest_file(rank)).write_text(
        json.dumps({"world": world, "files": files, "sizes": sizes}, indent=2))


def full_state_dict(engine) -> dict[str, torch.Tensor] | None:
    """The model's whole weights as float32 CPU tensors on rank 0 (None on the other ranks),
    for every ZeRO stage. Under ZeRO-3 each rank holds a slice of every parameter (except
    those below DeepSpeed's persistence threshold, which stay whole): each partitioned one is
    gathered in turn (a collective, so every rank must call this, in step), keeping only one
    whole parameter in memory at a time."""
    rank = engine.global_rank
    out: dict[str, torch.Tensor] = {}
    for name, tensor in engine.module.state_dict(keep_vars=True).items():
        if hasattr(tensor, "ds_id"):  # a ZeRO-3 parameter, partitioned or persistent
            import deepspeed

            with deepspeed.zero.GatheredParameters([tensor]):
                if rank == 0:
                    out[name] = tensor.detach().float().cpu().clone()
        elif rank == 0:
            out[name] = tensor.detach().float().cpu().clone()
    return out if rank == 0 else None


def export_model(engine, directory: Path, train_config, run_info: dict | None = None) -> None:
    """Plain float32 weights plus the model config, and the run's record: what generation and
    evaluation load, without DeepSpeed. Every rank calls it (ZeRO-3 gathers the weights, see
    `full_state_dict`); rank 0 writes."""
    sd = full_state_dict(engine)
    if engine.global_rank != 0:
        return
    model: TwoTowerLCM = engine.module
    torch.save(sd, directory / MODEL_FILE)
    (directory / MODEL_CONFIG).write_text(json.dumps(asdict(model.cfg), indent=2))
    (directory / TRAIN_CONFIG).write_text(json.dumps(asdict(train_config), indent=2))
    if run_info is not None:
        (directory / RUN_INFO).write_text(json.dumps(run_info, indent=2, ensure_ascii=False))


# ---- checking and reading ------------------------------------------------------------------

def complete(manifests: list[dict], present: dict[str, int]) -> bool:
    """The completeness rule, from a listing (path -> size): every rank's manifest is there (as
    many as the world size they record) and every file they list is present, with its size."""
    return bool(manifests) and len(manifests) == manifests[0]["world"] and all(
        set(m["files"]) <= set(present)
        and all(present[f] == size for f, size in m.get("sizes", {}).items())
        for m in manifests)


def verify_checkpoint(directory: Path) -> int:
    """Check a checkpoint folder is complete, every file matches its checksum and every torch
    file holds only tensors and DeepSpeed's states; raise CheckpointRejected if not. Returns
    the world size it was written with."""
    manifests = sorted(directory.glob(f"{MANIFEST_PREFIX}*.json"))
    if not manifests:
        raise CheckpointRejected(f"checkpoint {directory} has no file manifest: incomplete or "
                                 "not written by jobs.pretrain")
    world = json.loads(manifests[0].read_text())["world"]
    if len(manifests) != world:
        raise CheckpointRejected(f"checkpoint {directory} has {len(manifests)} of {world} rank "
                                 "manifests: it is incomplete")
    for m in manifests:
        for rel, digest in json.loads(m.read_text())["files"].items():
            path = (directory / rel).resolve()
            if directory.resolve() not in path.parents:
                raise CheckpointRejected(f"checkpoint manifest {m.name} names {rel!r}, outside "
                                         "the checkpoint")
            if not path.is_file() or sha256_file(path) != digest:
                raise CheckpointRejected(f"checkpoint {directory}: {rel} is missing or does not "
                                         "match its checksum (truncated or corrupted)")
            if path.suffix == ".pt":  # memory-mapped: the pickles are read, not the tensors
                _weights_only_load(str(path), map_location="cpu", mmap=True)
    return world


def read_history(directory: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(directory) / TRAIN_LOG).read_text().splitlines()]


def read_run_info(directory: Path) -> dict:
    path = Path(directory) / RUN_INFO
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: the checkpoint was written before runs "
                                "recorded their settings; name the normalizer and models by hand")
    return json.loads(path.read_text())


def read_history_at(uri: str) -> list[dict]:
    """The loss history of a checkpoint folder or URI (local or s3://), reading only its log."""
    fs, base = storage.resolve(uri)
    text = storage.read_bytes(fs, storage.join(base, TRAIN_LOG)).decode()
    return [json.loads(line) for line in text.splitlines()]


def read_worker(directory: Path, rank: int) -> dict:
    return torch.load(Path(directory) / worker_file(rank), weights_only=True)


# What DeepSpeed's state files hold besides tensors and plain containers (found by loading
# ZeRO-1/2/3 and bf16 checkpoints with torch's weights-only unpickler).
_DEEPSPEED_SAFE_GLOBALS = ("deepspeed.runtime.fp16.loss_scaler.LossScaler",
                           "deepspeed.runtime.zero.config.ZeroStageEnum",
                           "deepspeed.utils.tensor_fragment.fragment_address")


def _safe_globals() -> list:
    import importlib

    out = []
    for name in _DEEPSPEED_SAFE_GLOBALS:
        module, _, attr = name.rpartition(".")
        out.append(getattr(importlib.import_module(module), attr))
    return out


def _weights_only_load(path: str, map_location=None, mmap: bool = False):
    """torch.load that allows tensors and DeepSpeed's state classes only: a file that holds
    anything else (code, by way of pickle) is refused, never run."""
    import pickle

    try:
        with torch.serialization.safe_globals(_safe_globals()):
            return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        raise CheckpointRejected(f"refusing to load {path}: it holds objects other than "
                                 f"tensors and DeepSpeed's states ({str(e).splitlines()[0][:300]});"
                                 " a file crafted to run code when unpickled looks like "
                                 "this") from None
    except RuntimeError as e:  # not a torch zip file at all (mmap needs one)
        raise CheckpointRejected(f"refusing to load {path}: not a file torch.save "
                                 f"wrote ({str(e).splitlines()[0][:300]})") from None


def load_checkpoint(engine, directory: Path, verified: bool = False
                    ) -> tuple[dict, list[dict], dict]:
    """(training state, loss history, this rank's worker state) after verifying the folder
    (unless the caller just did) and loading model, optimizer and LR schedule into the engine
    (weights only)."""
    world = json.loads(next(directory.glob(f"{MANIFEST_PREFIX}*.json")).read_text())["world"] \
        if verified else verify_checkpoint(directory)
    if world != engine.world_size:
        raise ValueError(f"checkpoint {directory} was written by {world} workers; resuming "
                         f"with {engine.world_size} is not supported (the data positions "
                         "are per worker)")
    # DeepSpeed's own checkpoint engine unpickles with weights_only=False.
    checkpoint_engine = engine.checkpoint_engine
    unsafe_load = checkpoint_engine.load
    checkpoint_engine.load = _weights_only_load
    try:
        _, state = engine.load_checkpoint(str(directory), tag=DEEPSPEED_TAG)
    finally:
        checkpoint_engine.load = unsafe_load
    if state is None:
        raise CheckpointRejected(f"no DeepSpeed checkpoint under {directory}")
    return state, read_history(directory), read_worker(directory, engine.global_rank)


def load_exported_model(directory: Path, device: str = "cpu") -> TwoTowerLCM:
    model_path = Path(directory) / MODEL_FILE
    if not model_path.exists():
        raise FileNotFoundError(f"no exported model at {model_path} (is this a checkpoint "
                                "folder written by jobs.pretrain?)")
    cfg = TwoTowerConfig(**json.loads((Path(directory) / MODEL_CONFIG).read_text()))
    model = TwoTowerLCM(cfg)
    model.load_state_dict(torch.load(model_path, map_location=device, weights_only=True))
    return model.to(device).eval()


# ---- finding them in storage ---------------------------------------------------------------

def checkpoints(storage_path: str, run_name: str) -> Iterator[str]:
    """URIs of the run's complete checkpoint folders under a Ray Train storage path (local or
    s3://), newest first, leaving out those marked rejected (`reject`). Decided from listings
    (no download): see `complete`."""
    fs, base = storage.resolve(storage_path)
    selector = pafs.FileSelector(storage.join(base, run_name), allow_not_found=True)
    folders = sorted((i.path for i in fs.get_file_info(selector)
                      if i.type == pafs.FileType.Directory
                      and i.base_name.startswith(FOLDER_PREFIX)), reverse=True)
    scheme = "s3://" if storage_path.startswith("s3://") else ""
    for folder in folders:
        present = {i.path[len(folder) + 1:]: i.size for i in fs.get_file_info(
            pafs.FileSelector(folder, recursive=True)) if i.type == pafs.FileType.File}
        if REJECTED in present:
            continue
        names = sorted(p for p in present if p.startswith(MANIFEST_PREFIX))
        manifests = [json.loads(storage.read_bytes(fs, f"{folder}/{m}")) for m in names]
        if complete(manifests, present):
            yield scheme + folder


def latest_checkpoint(storage_path: str, run_name: str) -> str | None:
    """URI of the run's newest complete checkpoint folder not marked rejected, or None."""
    return next(checkpoints(storage_path, run_name), None)


def reject(checkpoint_uri: str, reason: str) -> None:
    """Mark a checkpoint folder rejected (REJECTED, with the reason): resuming and
    `checkpoints` pass over it from then on. The folder is kept for a person to look at."""
    fs, base = storage.resolve(checkpoint_uri)
    storage.write_bytes(fs, storage.join(base, REJECTED),
                        json.dumps({"reason": reason}, indent=2).encode())


def rejection(checkpoint_uri: str) -> str | None:
    """The reason a checkpoint folder was marked rejected, or None."""
    fs, base = storage.resolve(checkpoint_uri)
    path = storage.join(base, REJECTED)
    if not storage.exists(fs, path):
        return None
    return json.loads(storage.read_bytes(fs, path))["reason"]


def trained_keys(checkpoint_uri: str) -> np.ndarray:
    """Union over ranks of the document keys a run-time-mode checkpoint (folder or URI)
    records as trained."""
    fs, base = storage.resolve(checkpoint_uri)
    names = [i.path for i in fs.get_file_info(pafs.FileSelector(base))
             if i.base_name.startswith(WORKER_PREFIX)]
    keys = [torch.load(io.BytesIO(storage.read_bytes(fs, p)), weights_only=True).get("trained_keys")
            for p in names]
    return np.unique(np.concatenate([k.numpy() for k in keys if k is not None] +
                                    [np.zeros(0, np.int64)]))
