"""What a Serve replica does, without Ray: check a request (a `RequestError` with an HTTP status
and a message naming the problem), and answer a batch of checked requests with one model call
(generate, embed or decode). serving/app.py puts this behind HTTP and @serve.batch.

Each /generate request's text i draws its noise seeded `seed + i`, as `Mimir.generate` does:
an answer does not depend on which requests shared its batch.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Sequence, TypeVar

import numpy as np

from generation.api import GenerationConfig, Mimir, open_model
from generation.sources import sonar_files
from serving.config import ServeAppConfig

log = logging.getLogger(__name__)

W = TypeVar("W")


class RequestError(ValueError):
    """A request that cannot be answered: `status` is the HTTP status (4xx), the message says
    which field and why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class GenerateWork:
    texts: list[str]
    source_lang: str
    target_lang: str
    seed: int  # text i draws its noise seeded seed + i
    max_sentences: int
    split: bool  # split the texts with SaT (else each text is one sentence)

    @property
    def size(self) -> int:
        return len(self.texts)


@dataclass
class EmbedWork:
    texts: list[str]
    lang: str

    @property
    def size(self) -> int:
        return len(self.texts)


@dataclass
class DecodeWork:
    embeddings: np.ndarray  # [N, D] float32
    lang: str

    @property
    def size(self) -> int:
        return len(self.embeddings)


@dataclass
class Outcome:
    """One request's share of a batch: its answer, or its error and HTTP status."""
    value: object = None
    error: str | None = None
    status: int = 200


class MimirService:
    def __init__(self, cfg: ServeAppConfig, model: Mimir | None = None) -> None:
        self.cfg = cfg
        self.mimir = model or open_model(
            cfg.model, normalizer=cfg.normalizer or None,
            sonar=sonar_files(cfg.sonar_encoder, cfg.sonar_decoder, cfg.sonar_tokenizer),
            segment_model=cfg.segment_model or None, device=cfg.device,
            cache_dir=cfg.cache_dir,
            generation=GenerationConfig(cfg.max_sentences, cfg.stop_cosine,
                                        cfg.decode_max_tokens, cfg.max_batch_size,
                                        cfg.sampler))
        self.mimir.max_text_chars = cfg.max_text_chars

    def info(self) -> dict:
        m = self.mimir
        return {"model": m.info.get("checkpoint"), "step": m.info.get("step"),
                "instruction_tuned": m.sources.instruction_tuned, "device": m.device,
                "sonar_dim": m.encoder.dim}

    # ---- checks ----------------------------------------------------------------------------

    def _language(self, lang: str, field: str) -> str:
        try:
            return self.mimir.check_language(lang)
        except ValueError:  # its message lists all 202 codes: too long for an answer
            raise RequestError(400, f"{field}: unknown language {lang!r}; expected a SONAR "
                                    "(NLLB-200) code such as eng_Latn") from None

    def _texts(self, texts: Sequence[str]) -> list[str]:
        if not texts:
            raise RequestError(400, "texts: at least one text is needed")
        if len(texts) > self.cfg.max_texts_per_request:
            raise RequestError(413, f"texts: {len(texts)} texts, more than the limit of "
                                    f"{self.cfg.max_texts_per_request} per request")
        for i, text in enumerate(texts):
            if isinstance(text, str) and len(text) > self.cfg.max_text_chars:
                raise RequestError(413, f"texts[{i}] has {len(text)} characters, more than "
                                        f"the limit of {self.cfg.max_text_chars}")
            try:
                self.mimir.check_text(text, f"texts[{i}]")
            except ValueError as e:
                raise RequestError(400, str(e)) from None
        return list(texts)

    def generate_work(self, texts: Sequence[str], source_lang: str, target_lang: str,
                      max_sentences: int | None = None, seed: int = 0,
                      split: bool = True) -> GenerateWork:
        """A checked /generate request (its sentence count is checked once SaT has split it,
        in `generate`)."""
        source = self._language(source_lang, "source_lang")
        target = self._language(target_lang, "target_lang")
        texts = self._texts(texts)
        n = self.cfg.max_sentences if max_sentences is None else max_sentences
        if not 1 <= n <= self.cfg.max_sentences_limit:
            raise RequestError(400, f"max_sentences: {n} is not between 1 and "
                                    f"{self.cfg.max_sentences_limit}")
        return GenerateWork(texts, source, target, seed, n, split)

    def embed_work(self, texts: Sequence[str], lang: str) -> EmbedWork:
        return EmbedWork(self._texts(texts), self._language(lang, "lang"))

    def decode_work(self, embeddings: Sequence[Sequence[float]], lang: str) -> DecodeWork:
        lang = self._language(lang, "lang")
        if not embeddings:
            raise RequestError(400, "embeddings: at least one embedding is needed")
        if len(embeddings) > self.cfg.max_texts_per_request:
            raise RequestError(413, f"embeddings: {len(embeddings)} embeddings, more than the "
                                    f"limit of {self.cfg.max_texts_per_request} per request")
        dim = self.mimir.encoder.dim
        bad = [i for i, e in enumerate(embeddings) if len(e) != dim]
        if bad:
            raise RequestError(400, f"embeddings[{bad[0]}] has {len(embeddings[bad[0]])} "
                                    f"values; this model's embeddings have {dim}")
        array = np.asarray(embeddings, dtype=np.float32)
        if not np.isfinite(array).all():
            raise RequestError(400, "embeddings hold NaN or infinite values")
        return DecodeWork(array, lang)

    # ---- batches ---------------------------------------------------------------------------

    def prompts(self, works: list[GenerateWork]) -> list[list[list[str]] | RequestError]:
        """Each request's prompts as the model sees them (one SaT call for every text to
        split, then the turn framing), or the error of a request with a prompt of too many
        sentences."""
        to_split = [t for w in works if w.split for t in w.texts]
        split = iter(self.mimir.split(to_split) if to_split else [])
        out: list[list[list[str]] | RequestError] = []
        for w in works:
            sentences = [next(split) if w.split else [t] for t in w.texts]
            limit = self.cfg.max_prompt_sentences
            too_long = [i for i, s in enumerate(sentences) if len(s) > limit]
            if too_long:
                i = too_long[0]
                out.append(RequestError(413, f"texts[{i}] has {len(sentences[i])} sentences, "
                                             f"more than the limit of {limit}"))
            else:
                out.append(self.mimir.framed(sentences, [w.source_lang] * w.size))
        return out

    def generate(self, works: list[GenerateWork]) -> list[list[dict] | RequestError]:
        """Every request's generations (or its error), from one model call per max_sentences
        value among the batch's requests."""
        prompts = self.prompts(works)
        out: list[list[dict] | RequestError] = [
            p if isinstance(p, RequestError) else [] for p in prompts]
        by_length: dict[int, list[int]] = defaultdict(list)
        for k, w in enumerate(works):
            if not isinstance(prompts[k], RequestError):
                by_length[w.max_sentences].append(k)
        for n, ks in by_length.items():
            flat = [(k, j) for k in ks for j in range(works[k].size)]
            results = self.mimir.generate_prompts(
                [prompts[k][j] for k, j in flat], [works[k].source_lang for k, _ in flat],
                [works[k].target_lang for k, _ in flat],
                seeds=[works[k].seed + j for k, j in flat], max_sentences=n)
            for (k, _), g in zip(flat, results):
                out[k].append(g.to_dict())
        return out

    def embed(self, works: list[EmbedWork]) -> list[list[list[float]]]:
        texts = [t for w in works for t in w.texts]
        vectors = self.mimir.embed(texts, [w.lang for w in works for _ in w.texts])
        bounds = np.cumsum([0] + [w.size for w in works])
        return [vectors[a:b].tolist() for a, b in zip(bounds[:-1], bounds[1:])]

    def decode(self, works: list[DecodeWork]) -> list[list[str]]:
        out: list[list[str]] = [[] for _ in works]
        by_lang: dict[str, list[int]] = defaultdict(list)
        for k, w in enumerate(works):
            by_lang[w.lang].append(k)
        for lang, ks in by_lang.items():
            texts = iter(self.mimir.decode(np.concatenate([works[k].embeddings for k in ks]),
                                           lang))
            for k in ks:
                out[k] = [next(texts) for _ in range(works[k].size)]
        return out


def run_batch(fn: Callable[[list[W]], list], works: list[W]) -> list[Outcome]:
    """fn over the whole batch; if it fails, over each request alone, so that a request that
    breaks the model fails alone (HTTP 500) and its batch-mates are still answered. A
    RequestError that fn returns for a request is that request's 4xx answer."""
    try:
        return [_outcome(v) for v in fn(works)]
    except Exception as e:  # noqa: BLE001 - the batch is retried request by request
        if len(works) == 1:
            log.exception("a request failed")
            return [Outcome(error=f"{type(e).__name__}: {e}", status=500)]
        log.exception("a batch of %d requests failed; answering them one by one", len(works))
    outcomes = []
    for w in works:
        try:
            outcomes.append(_outcome(fn([w])[0]))
        except Exception as e:  # noqa: BLE001
            log.exception("a request failed")
            outcomes.append(Outcome(error=f"{type(e).__name__}: {e}", status=500))
    return outcomes


def _outcome(value: object) -> Outcome:
    if isinstance(value, RequestError):
        return Outcome(error=str(value), status=value.status)
    return Outcome(value=value)
