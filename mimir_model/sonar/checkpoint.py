"""Find and load official-format SONAR checkpoints (`{"model": state_dict}`, fairseq2 names).

URIs: a local path (or file://), https:// (downloaded once into a cache directory) or s3://
(boto3; honours AWS_ENDPOINT_URL and the usual AWS_* credential variables).

The files hold no config, so it is inferred from tensor shapes: model_dim and vocab_size from
the embedding, num_layers from the layer keys, ffn_dim from the first FFN. The head count
cannot be seen in the weights; the rule is 16 heads from model_dim 1024 up (the published
models) and model_dim // 16 below (the tiny test assets: 64 -> 4). Pass `cfg` otherwise.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch
from torch import nn

from storage.cache import fetch
from mimir_model.sonar.config import SonarConfig
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


def infer_config(state: dict[str, torch.Tensor], prefix: str) -> SonarConfig:
    """Config from shapes; `prefix` is "encoder" or "decoder"."""
    embed_key = f"{prefix}_frontend.embed.weight"
    if embed_key not in state:
        raise ValueError(f"checkpoint has no {embed_key!r}: not a SONAR text {prefix}")
    vocab_size, model_dim = state[embed_key].shape
    layer_ids = {int(m.group(1)) for k in state
                 if (m := re.match(rf"{prefix}\.layers\.(\d+)\.", k))}
    ffn_dim = state[f"{prefix}.layers.0.ffn.inner_proj.weight"].shape[0]
    num_heads = 16 if model_dim >= 1024 else max(1, model_dim // 16)
    return SonarConfig(model_dim=model_dim, num_layers=len(layer_ids), num_heads=num_heads,
                       ffn_dim=ffn_dim, vocab_size=vocab_size)


def _load(module_cls: type[nn.Module], prefix: str, uri: str, cfg: SonarConfig | None,
          device: str | torch.device, dtype: torch.dtype | None,
          cache_dir: str | Path | None) -> nn.Module:
    path = resolve_uri(uri, cache_dir)
    state = load_state_dict(path)
    cfg = cfg or infer_config(state, prefix)
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
                 dtype: torch.dtype | None = None,
                 cache_dir: str | Path | None = None) -> SonarEncoder:
    return _load(SonarEncoder, "encoder", uri, cfg, device, dtype, cache_dir)


def load_decoder(uri: str, cfg: SonarConfig | None = None, device: str | torch.device = "cpu",
                 dtype: torch.dtype | None = None,
                 cache_dir: str | Path | None = None) -> SonarDecoder:
    return _load(SonarDecoder, "decoder", uri, cfg, device, dtype, cache_dir)
