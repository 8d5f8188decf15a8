"""Generation over a file of prompts (`python -m jobs.generate`): read prompts (JSONL or plain
lines, from a file or stdin), split, frame and continue them in batches with the Python API,
write one JSON line per prompt (to a file or stdout) as each batch is done, log progress.

Input lines: `{"text": ..., "lang": ..., "target_lang": ...}` (optional `id`, `seed`;
missing languages come from source_lang / target_lang), or plain text with
source_lang / target_lang set. Prompt i (0-based, in input order) draws its noise seeded
seed + i unless its line sets `seed`, so a prompt's result does not depend on batch_size.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterator, Literal

from generation.api import GenerationConfig, Mimir, open_model
from generation.sources import sonar_files
from mimir_model.diffusion import SamplerConfig
from mimir_model.framing import STOP_COSINE
from storage.paths import Output

log = logging.getLogger(__name__)


@dataclass
class GenerateConfig:
    # A training checkpoint or run folder (local or s3://; its newest checkpoint), or a folder
    # written by jobs.export.
    checkpoint: str = ""
    input: str = "-"  # the prompts: a JSONL or text file, "-" = stdin
    output: str = "-"  # the results (JSONL), "-" = stdout
    source_lang: str = ""  # language of plain lines and of JSON lines without "lang"
    target_lang: str = ""  # language to generate in, for lines without "target_lang"
    max_sentences: int = 16  # generated sentences per prompt at most
    stop_cosine: float = STOP_COSINE  # a sentence this close to "End of text." ends a prompt
    decode_max_tokens: int = 0  # per decoded sentence; 0 = SONAR's rule (dim + 128)
    batch_size: int = 32  # prompts generated together
    seed: int = 0  # prompt i draws its noise seeded seed + i (unless its line sets "seed")
    split: bool = True  # split prompts into sentences with SaT (false: a prompt is a sentence)
    # Frame prompts as a user turn: auto = if the checkpoint is instruction-tuned.
    frame: Literal["auto", "yes", "no"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: CUDA when there is a GPU
    # Instead of what the checkpoint records (empty: the recorded ones).
    normalizer: str = ""
    sonar_encoder: str = ""
    sonar_decoder: str = ""
    sonar_tokenizer: str = ""
    segment_model: str = ""
    cache_dir: Output = "build/cache"  # where remote files are downloaded
    sampler: SamplerConfig = field(default_factory=SamplerConfig)  # the paper's settings


@dataclass
class Prompt:
    index: int
    text: str
    lang: str
    target_lang: str
    seed: int
    id: object = None


def read_prompts(stream: IO[str], cfg: GenerateConfig) -> list[Prompt]:
    """The non-empty lines of `stream` as prompts; a line without a language it needs (and no
    default in cfg) is an error naming the line."""
    prompts: list[Prompt] = []
    for number, line in enumerate(stream, 1):
        if not line.strip():
            continue
        row = _json_object(line)
        if row is None:
            row = {"text": line.rstrip("\n")}
        elif not isinstance(row.get("text"), str):
            raise ValueError(f"input line {number}: a JSON line needs a string \"text\"")
        lang = row.get("lang") or cfg.source_lang
        target = row.get("target_lang") or cfg.target_lang
        if not lang or not target:
            missing = "source" if not lang else "target"
            raise ValueError(f"input line {number}: no {missing} language (give \"lang\" / "
                             f"\"target_lang\" in the line, or --{missing}-lang)")
        i = len(prompts)
        prompts.append(Prompt(i, row["text"], lang, target, int(row.get("seed", cfg.seed + i)),
                              row.get("id")))
    return prompts


def _json_object(line: str) -> dict | None:
    if not line.lstrip().startswith("{"):
        return None
    try:
        value = json.loads(line)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def load(cfg: GenerateConfig) -> Mimir:
    generation = GenerationConfig(cfg.max_sentences, cfg.stop_cosine, cfg.decode_max_tokens,
                                  cfg.batch_size, cfg.sampler)
    return open_model(cfg.checkpoint, normalizer=cfg.normalizer or None,
                      sonar=sonar_files(cfg.sonar_encoder, cfg.sonar_decoder,
                                        cfg.sonar_tokenizer),
                      segment_model=cfg.segment_model or None, device=cfg.device,
                      cache_dir=cfg.cache_dir, generation=generation)


def results(model: Mimir, prompts: list[Prompt], cfg: GenerateConfig) -> Iterator[dict]:
    """One result per prompt, in order, a batch at a time."""
    for p in prompts:  # every prompt is checked before any is generated
        model.check_text(p.text, f"prompt {p.index}")
        model.check_language(p.lang)
        model.check_language(p.target_lang)
    frame = None if cfg.frame == "auto" else cfg.frame == "yes"
    t0 = time.monotonic()
    for a in range(0, len(prompts), cfg.batch_size):
        batch = prompts[a:a + cfg.batch_size]
        framed = model.prompts([p.text for p in batch], [p.lang for p in batch], cfg.split,
                               frame)
        out = model.generate_prompts(framed, [p.lang for p in batch],
                                     [p.target_lang for p in batch],
                                     seeds=[p.seed for p in batch])
        for p, g in zip(batch, out):
            yield {**({"id": p.id} if p.id is not None else {}), "index": p.index,
                   "prompt": p.text, "lang": p.lang, "target_lang": p.target_lang,
                   "seed": p.seed, **g.to_dict()}
        done = a + len(batch)
        log.info("generated %d/%d prompts (%.2f prompts/s)", done, len(prompts),
                 done / max(time.monotonic() - t0, 1e-9))


def run(cfg: GenerateConfig) -> int:
    """Generate for every prompt of cfg.input into cfg.output; returns the number of prompts."""
    if not cfg.checkpoint:
        raise ValueError("set --checkpoint URI (a checkpoint, run or exported folder)")
    if cfg.input == "-":
        prompts = read_prompts(sys.stdin, cfg)
    else:
        with open(cfg.input, encoding="utf-8") as f:
            prompts = read_prompts(f, cfg)
    log.info("%d prompts from %s", len(prompts), "stdin" if cfg.input == "-" else cfg.input)
    model = load(cfg)
    if cfg.output == "-":
        _write(results(model, prompts, cfg), sys.stdout)
    else:
        Path(cfg.output).parent.mkdir(parents=True, exist_ok=True)
        with open(cfg.output, "w", encoding="utf-8") as f:
            _write(results(model, prompts, cfg), f)
        log.info("wrote %d results to %s", len(prompts), cfg.output)
    return len(prompts)


def _write(rows: Iterator[dict], out: IO[str]) -> None:
    for row in rows:
        out.write(json.dumps(row, ensure_ascii=False) + "\n")
        out.flush()
