"""Load a wtpsplit SaT sentence segmenter (offline_assets/sat.py builds a tiny random one).

A model is named by a Hub id ("segment-any-text/sat-3l", needs network or the HF cache), a
local directory (as written by `save_pretrained`), or an s3:// prefix holding such a directory,
which is downloaded once into a local cache. The real SaT repositories ship no tokenizer and use
XLM-R's; a directory that contains its own tokenizer files (like the tiny one) uses those.
"""

from __future__ import annotations

import logging
from pathlib import Path

from storage.cache import fetch

log = logging.getLogger(__name__)

DEFAULT_SAT = "segment-any-text/sat-3l"
XLMR_TOKENIZER = "facebookAI/xlm-roberta-base"
_TOKENIZER_FILES = ("tokenizer.json", "sentencepiece.bpe.model")


def load_sat(model: str = DEFAULT_SAT, device: str = "cpu", cache_dir: Path | None = None):
    """A ready `wtpsplit.SaT` on `device` ("cpu" or "cuda"; fp16 on GPU as wtpsplit advises)."""
    from wtpsplit import SaT

    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    if model.startswith("s3://"):
        model = str(fetch(model, cache_dir))
    if Path(model).is_dir():
        has_tokenizer = any((Path(model) / f).exists() for f in _TOKENIZER_FILES)
        sat = SaT(model, tokenizer_name_or_path=model if has_tokenizer else XLMR_TOKENIZER)
    else:
        # SaT prepends hub_prefix to bare names like "sat-3l"; full ids go as they are.
        sat = SaT(model, hub_prefix=None) if "/" in model else SaT(model)
    if device == "cuda":
        sat.half().to("cuda")
    log.info("loaded SaT %s on %s", model, device)
    return sat
