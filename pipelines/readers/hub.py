"""Where each source lives on the Hugging Face Hub: a dataset id in a config names these Parquet
files (read by streaming through `datasets`, which needs the Hub or its cache)."""

from __future__ import annotations

# FineWeb-Edu's English sample the paper used, and FineWeb-2's per-config folders.
FINEWEB_FILES = {
    "HuggingFaceFW/fineweb-edu": "hf://datasets/HuggingFaceFW/fineweb-edu/sample/350BT/*.parquet",
    "HuggingFaceFW/fineweb-2": "hf://datasets/HuggingFaceFW/fineweb-2/data/{config}/train/*.parquet",
}

# The other sources: dataset id -> Parquet files of the train split (`@~parquet` is the Hub's
# Parquet export, which exists for script-based datasets such as MLQA too). MLQA's
# translate-train has no English part; English is its source, SQuAD v1.1 train.
RECORD_FILES = {
    "OpenAssistant/oasst2": "hf://datasets/OpenAssistant/oasst2/data/train-*.parquet",
    "MBZUAI/Bactrian-X": "hf://datasets/MBZUAI/Bactrian-X@~parquet/{config}/train/*.parquet",
    "CohereForAI/aya_dataset": "hf://datasets/CohereForAI/aya_dataset@~parquet/default/train/*.parquet",
    "facebook/mlqa": "hf://datasets/facebook/mlqa@~parquet/mlqa-translate-train.{config}/train/*.parquet",
    "rajpurkar/squad": "hf://datasets/rajpurkar/squad@~parquet/plain_text/train/*.parquet",
    "csebuetnlp/xlsum": "hf://datasets/csebuetnlp/xlsum@~parquet/{config}/train/*.parquet",
    "nvidia/OpenMathInstruct-2": "hf://datasets/nvidia/OpenMathInstruct-2@~parquet/default/train/*.parquet",
    "HuggingFaceTB/everyday-conversations-llama3.1-2k":
        "hf://datasets/HuggingFaceTB/everyday-conversations-llama3.1-2k@~parquet/default/train_sft/*.parquet",
}


def fineweb_files(uri: str, config: str) -> str | None:
    """The Hub glob of a FineWeb dataset id's config, or None for anything else."""
    pattern = FINEWEB_FILES.get(uri)
    return pattern.format(config=config) if pattern else None


def record_files(uri: str, config: str | None) -> str | None:
    """The Hub glob of another source's dataset id (and config), or None."""
    pattern = RECORD_FILES.get(uri)
    return pattern.format(config=config) if pattern else None
