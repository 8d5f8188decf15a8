"""Pre-training evaluation: next-sentence L2 and round-trip L2 per language.

For each document with at least `min_sentences` sentences (the first `max_documents` of them),
every prefix of 1, 2, ... sentences predicts the next sentence's embedding with the sampler:
  L2            = ||pred - gold||
  round-trip L2 = ||SONAR(decode(pred, doc language)) - gold||

    python -m jobs.eval_pretrain --config jobs/configs/eval_pretrain.yaml checkpoint=URI
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from jobs import config as config_io
from jobs.cluster import init_ray
from mimir_model.diffusion import NoiseSchedule, SamplerConfig
from mimir_model.generate import predict_next_embeddings
from mimir_model.normalizer import RobustNormalizer
from mimir_model.fetch import fetch
from mimir_model.sonar.pipeline import TextDecoder, TextEncoder
from mimir_model.train import load_exported_model
from pipelines import shards, storage

log = logging.getLogger("jobs.eval_pretrain")


@dataclass
class EvalPretrainConfig:
    checkpoint: str = ""  # a checkpoint folder written by jobs.pretrain (local or s3://)
    normalizer: str = "build/demo/normalizer.safetensors"
    shards: str = "build/demo/shards"
    sonar_encoder: str = "build/assets/tiny/sonar/sonar_text_encoder.pt"
    sonar_decoder: str = "build/assets/tiny/sonar/sonar_text_decoder.pt"
    sonar_tokenizer: str = "build/assets/tiny/sonar/sentencepiece.model"
    min_sentences: int = 9
    max_documents: int = 1000
    prefix_batch: int = 64
    seed: int = 0
    device: str = "cpu"
    num_gpus: float = 0
    cache_dir: str = "build/cache"
    output: str = "build/demo/report/eval_pretrain.json"
    sampler: SamplerConfig = field(default_factory=SamplerConfig)


def select_documents(sentences: list[list[str]], min_sentences: int,
                     max_documents: int) -> list[int]:
    """Indices of the first max_documents documents with at least min_sentences sentences."""
    return [i for i, s in enumerate(sentences) if len(s) >= min_sentences][:max_documents]


def prefixes(n_sentences: int) -> list[int]:
    """Prefix lengths evaluated for a document of n sentences: 1 .. n-1 (each predicts the
    sentence after it; the appended "End of text." is not a target)."""
    return list(range(1, n_sentences))


def evaluate(cfg: EvalPretrainConfig) -> dict:
    cache = Path(cfg.cache_dir)
    model = load_exported_model(fetch(cfg.checkpoint, cache), cfg.device)
    normalizer = RobustNormalizer.load(fetch(cfg.normalizer, cache))
    encoder = TextEncoder.from_uris(cfg.sonar_encoder, cfg.sonar_tokenizer, device=cfg.device,
                                    cache_dir=str(cache))
    decoder = TextDecoder.from_uris(cfg.sonar_decoder, cfg.sonar_tokenizer, device=cfg.device,
                                    cache_dir=str(cache))
    table = shards.read_table(cfg.shards, columns=["id", "lang", "sentences", "embeddings"])
    sentences = table["sentences"].to_pylist()
    chosen = select_documents(sentences, cfg.min_sentences, cfg.max_documents)
    if not chosen:
        raise ValueError(f"no document in {cfg.shards} has at least {cfg.min_sentences} "
                         "sentences")
    embeddings = shards.arrow_to_embeddings(table["embeddings"])
    langs = table["lang"].to_pylist()

    # (document, prefix length) pairs, in order.
    items = [(d, k) for d in chosen for k in prefixes(len(sentences[d]))]
    schedule = NoiseSchedule()
    generator = torch.Generator().manual_seed(cfg.seed)
    l2, rt_l2 = np.zeros(len(items)), np.zeros(len(items))
    for start in range(0, len(items), cfg.prefix_batch):
        part = items[start:start + cfg.prefix_batch]
        contexts = [embeddings[d][:k] for d, k in part]
        gold = np.stack([embeddings[d][k] for d, k in part])
        pred = predict_next_embeddings(model, schedule, cfg.sampler, normalizer, contexts,
                                       generator)
        l2[start:start + len(part)] = np.linalg.norm(pred - gold, axis=1)
        # Round trip: decode each prediction into its document's language and embed it again.
        by_lang: dict[str, list[int]] = defaultdict(list)
        for j, (d, _) in enumerate(part):
            by_lang[langs[d]].append(j)
        for lang, rows in by_lang.items():
            texts = decoder.decode(pred[rows], lang)
            again = encoder.encode(texts, lang)
            rt_l2[[start + j for j in rows]] = np.linalg.norm(again - gold[rows], axis=1)
        log.info("evaluated %d/%d prefixes", start + len(part), len(items))

    per_lang: dict[str, dict] = {}
    for lang in sorted({langs[d] for d in chosen}):
        idx = [i for i, (d, _) in enumerate(items) if langs[d] == lang]
        per_lang[lang] = {"documents": len({items[i][0] for i in idx}), "prefixes": len(idx),
                          "l2": float(l2[idx].mean()), "round_trip_l2": float(rt_l2[idx].mean())}
    result = {"checkpoint": cfg.checkpoint, "shards": cfg.shards,
              "min_sentences": cfg.min_sentences, "documents": len(chosen),
              "prefixes": len(items), "l2": float(l2.mean()),
              "round_trip_l2": float(rt_l2.mean()), "per_language": per_lang,
              "sampler": asdict(cfg.sampler)}
    out_fs, out_path = storage.resolve(cfg.output)
    storage.write_bytes(out_fs, out_path, json.dumps(result, indent=2).encode())
    log.info("L2 %.4f, round-trip L2 %.4f over %d prefixes of %d documents -> %s",
             result["l2"], result["round_trip_l2"], len(items), len(chosen), cfg.output)
    return result


def run(cfg: EvalPretrainConfig) -> dict:
    """Runs the evaluation as a Ray task (on a GPU node when num_gpus > 0)."""
    import ray

    if not cfg.checkpoint:
        raise ValueError("set checkpoint=URI (a checkpoint folder written by jobs.pretrain)")
    init_ray()
    for name in ("checkpoint", "normalizer", "shards", "sonar_encoder", "sonar_decoder",
                 "sonar_tokenizer", "cache_dir", "output"):
        setattr(cfg, name, config_io.absolute(getattr(cfg, name)))
    task = ray.remote(num_cpus=1, num_gpus=cfg.num_gpus)(evaluate)
    return ray.get(task.remote(cfg))


def main() -> None:
    args = config_io.cli(__doc__.splitlines()[0], "jobs/configs/eval_pretrain.yaml")
    result = run(config_io.load(EvalPretrainConfig, args.config, args.overrides))
    print(json.dumps({k: result[k] for k in ("documents", "prefixes", "l2", "round_trip_l2")}))


if __name__ == "__main__":
    main()
