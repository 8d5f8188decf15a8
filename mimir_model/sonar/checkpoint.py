"""Find and load official-format SONAR checkpoints (`{"model": state_dict}`, fairseq2 names).

URIs: a local path (or file://), https:// (downloaded once into a cache directory) or s3://
(boto3; honours AWS_ENDPOINT_URL and the usual AWS_* credential variables).

The files hold no config. The weights give model_dim and vocab_size (the embedding),
num_layers (the layer keys) and ffn_dim (the first FFN); they cannot give the attention head
count, the length limit or the tokenizer's languages. So a checkpoint of exactly the published
shape (1024, 24 layers, FFN 8192, vocabulary 256,206) gets the published values (16 heads, 512
tokens, SONAR_LANGUAGES); any other must come with them (never guessed): explicitly (a
SonarShape, the jobs' `sonar.shape` keys) or in a sidecar JSON beside the checkpoint, the same
name with `.json` (`sonar_text_encoder.pt` -> `sonar_text_encoder.json`), e.g.

    {"num_heads": 4, "max_seq_len": 512, "langs": ["eng_Latn", "fra_Latn"]}

which may also state model_dim, num_layers, ffn_dim and vocab_size (checked against the
weights). Explicit values win over the sidecar's.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import urllib.error
from pathlib import Path

import torch
from torch import nn

from storage.cache import fetch
from mimir_model.sonar.config import SonarConfig, SonarShape
from mimir_model.sonar.decoder import SonarDecoder
from mimir_model.sonar.encoder import SonarEncoder

log = logging.getLogger(__name__)

BUILD_HINT = "`python -m jobs.assets tiny --out DIR` builds tiny offline assets"


def resolve_uri(uri: str, cache_dir: str | Path | None = None) -> Path:
    """Local path of a SONAR file, downloading https:// and s3:// objects into cache_dir once."""
    try:
        path = fetch(uri, Path(cache_dir) / "sonar" if cache_dir else None)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"SONAR asset not found: {e} ({BUILD_HINT})") from e
    if not path.is_file():
        raise FileNotFoundError(f"SONAR asset {path} is not a file ({BUILD_HINT})")
    return path


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    state = ckpt.get("model") if isinstance(ckpt, dict) else None
    if state is None:
        raise ValueError(f"{path} is not a SONAR checkpoint: expected {{'model': state_dict}}")
    for key, tensor in state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ValueError(f"{path}: tensor {key!r} contains NaN or Inf")
    return state


_SEEN = ("model_dim", "num_layers", "ffn_dim", "vocab_size")  # read from the weights
_NOT_SEEN = ("num_heads", "max_seq_len", "langs")


def sidecar_uri(uri: str) -> str:
    """`<checkpoint name>.json` beside the checkpoint."""
    head, sep, name = uri.rpartition("/")
    return f"{head}{sep}{Path(name).stem}.json"


def read_sidecar(uri: str, cache_dir: str | Path | None = None) -> dict | None:
    """The sidecar JSON of the checkpoint at `uri`, or None when there is none."""
    side = sidecar_uri(uri)
    try:
        path = fetch(side, Path(cache_dir) / "sonar" if cache_dir else None)
    except FileNotFoundError:
        return None
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"SONAR sidecar {side} is not valid JSON: {e}") from None
    if not isinstance(data, dict) or set(data) - set(_SEEN + _NOT_SEEN):
        raise ValueError(f"SONAR sidecar {side}: expected an object with some of the keys "
                         f"{', '.join(_SEEN + _NOT_SEEN)}, got {data!r:.200}")
    return data


def resolve_config(state: dict[str, torch.Tensor], prefix: str, uri: str,
                   shape: SonarShape | None = None,
                   cache_dir: str | Path | None = None) -> SonarConfig:
    """The config of a checkpoint (`prefix` "encoder" or "decoder"): the weights' shape plus
    the head count, length limit and languages from `shape`, else the sidecar, else the
    published values if the weights have the published shape (the module docstring)."""
    embed_key = f"{prefix}_frontend.embed.weight"
    if embed_key not in state:
        raise ValueError(f"checkpoint has no {embed_key!r}: not a SONAR text {prefix}")
    vocab_size, model_dim = state[embed_key].shape
    layer_ids = {int(m.group(1)) for k in state
                 if (m := re.match(rf"{prefix}\.layers\.(\d+)\.", k))}
    seen = {"model_dim": model_dim, "num_layers": len(layer_ids),
            "ffn_dim": state[f"{prefix}.layers.0.ffn.inner_proj.weight"].shape[0],
            "vocab_size": vocab_size}
    sidecar = read_sidecar(uri, cache_dir) or {}
    for key in _SEEN:
        if key in sidecar and sidecar[key] != seen[key]:
            raise ValueError(f"{sidecar_uri(uri)} says {key} {sidecar[key]} but the weights "
                             f"of {uri} have {seen[key]}")
    given = {k: v for k, v in sidecar.items() if k in _NOT_SEEN}
    given.update({k: v for k, v in dataclasses.asdict(shape or SonarShape()).items()
                  if v is not None})
    published = SonarConfig.basic()
    if all(seen[k] == getattr(published, k) for k in _SEEN):
        given = {k: getattr(published, k) for k in _NOT_SEEN} | given
    missing = [k for k in ("num_heads", "max_seq_len") if k not in given]
    if missing:
        shown = ", ".join(f"{k} {v}" for k, v in seen.items())
        raise ValueError(
            f"SONAR {prefix} {uri} ({shown}) is not of the published shape "
            f"({', '.join(f'{k} {getattr(published, k)}' for k in _SEEN)}), and its "
            f"{' and '.join(missing)} cannot be read from the weights: write them into "
            f"{sidecar_uri(uri)} beside it, e.g. {{\"num_heads\": 4, \"max_seq_len\": 512, "
            "\"langs\": [\"eng_Latn\", ...]}, or set them in the job config "
            f"(sonar.shape.{missing[0]}=...)")
    langs = tuple(given.get("langs", published.langs))
    if not all(isinstance(x, str) and x for x in langs) or len(set(langs)) < len(langs):
        raise ValueError(f"SONAR {prefix} {uri}: langs must be distinct language codes, got "
                         f"{list(langs)!r:.200}")
    if model_dim % given["num_heads"]:
        raise ValueError(f"SONAR {prefix} {uri}: model_dim {model_dim} is not a multiple of "
                         f"num_heads {given['num_heads']}")
    return SonarConfig(**seen, num_heads=given["num_heads"],
                       max_seq_len=given["max_seq_len"], langs=langs)


def _load(module_cls: type[nn.Module], prefix: str, uri: str, cfg: SonarConfig | None,
          shape: SonarShape | None, device: str | torch.device, dtype: torch.dtype | None,
          cache_dir: str | Path | None) -> nn.Module:
    path = resolve_uri(uri, cache_dir)
    state = load_state_dict(path)
    cfg = cfg or resolve_config(state, prefix, uri, shape, cache_dir)
    with torch.device("meta"):  # no random init: the real models have ~0.8B parameters
        model = module_cls(cfg)
    expected = model.state_dict()
    for key, tensor in state.items():
        if key in expected and tensor.shape != expected[key].shape:
            raise ValueError(f"{path}: tensor {key!r} has shape {tuple(tensor.shape)}, "
                             f"expected {tuple(expected[key].shape)} for {cfg}")
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as e:  # missing or unexpected keys, named by torch
        raise ValueError(f"{path} does not match SonarConfig {cfg}: {e}") from None
    return model.to(device=device, dtype=dtype).eval()


def load_encoder(uri: str, cfg: SonarConfig | None = None, device: str | torch.device = "cpu",
                 dtype: torch.dtype | None = None, cache_dir: str | Path | None = None,
                 shape: SonarShape | None = None) -> SonarEncoder:
    """The encoder at `uri`; its config is `cfg`, else resolve_config's (with `shape`)."""
    return _load(SonarEncoder, "encoder", uri, cfg, shape, device, dtype, cache_dir)


def load_decoder(uri: str, cfg: SonarConfig | None = None, device: str | torch.device = "cpu",
                 dtype: torch.dtype | None = None, cache_dir: str | Path | None = None,
                 shape: SonarShape | None = None) -> SonarDecoder:
    """The decoder at `uri`; its config is `cfg`, else resolve_config's (with `shape`)."""
    return _load(SonarDecoder, "decoder", uri, cfg, shape, device, dtype, cache_dir)
