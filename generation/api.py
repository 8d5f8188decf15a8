"""The Python API for using a trained model, in a notebook or a service:

    from generation import Mimir
    m = Mimir.from_checkpoint("s3://bucket/ckpt/run/checkpoint_...")  # or a run folder
    m = Mimir.from_pretrained("exported/")                           # jobs.export's folder
    out = m.generate(["Ein Satz. Noch einer."], "deu_Latn", "fra_Latn")
    out[0].sentences, out[0].text
    vectors = m.embed(["A sentence."], "eng_Latn")
    texts = m.decode(vectors, "spa_Latn")

A prompt is split into sentences by SaT, framed as a user turn when the model is
instruction-tuned, continued sentence by sentence with the paper's sampler until the
end-of-text embedding (or max_sentences), and decoded by SONAR into the target language.
Prompt i of a call draws its noise from its own stream, seeded seed + i (or seeds[i]): what a
prompt generates does not depend on the other prompts of its batch, so the command line, the
server and this API agree for the same prompt and seed. No Ray, no DeepSpeed.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import pyarrow as pa
import torch

import storage
from generation.sources import ModelSources, checkpoint_files
from mimir_model.checkpoint import TRAINER_STATE, load_exported_model, read_run_info
from mimir_model.diffusion import NoiseSchedule, SamplerConfig
from mimir_model.framing import STOP_COSINE, frame_prompt
from mimir_model.generate import generate
from mimir_model.normalizer import RobustNormalizer
from mimir_model.sonar.config import SonarFiles
from mimir_model.sonar.pipeline import TextDecoder, TextEncoder
from mimir_model.two_tower import TwoTowerLCM
from pipelines.stage_configs import SegmentConfig
from pipelines.validate import MAX_CHARS, text_problem

log = logging.getLogger(__name__)

Device = Literal["auto", "cpu", "cuda"]


@dataclass
class GenerationConfig:
    max_sentences: int = 16  # generated sentences per prompt at most (the paper's eval: 16)
    stop_cosine: float = STOP_COSINE  # a sentence this close to "End of text." ends a prompt
    decode_max_tokens: int = 0  # per decoded sentence; 0 = SONAR's rule (dim + 128)
    batch_size: int = 32  # prompts generated together
    sampler: SamplerConfig = field(default_factory=SamplerConfig)  # the paper's settings


@dataclass
class Generation:
    prompt_sentences: list[str]  # the prompt as the model saw it (split, framed)
    sentences: list[str]  # the generated sentences, in the target language
    text: str  # the sentences joined by spaces

    def to_dict(self) -> dict:
        return asdict(self)


def pick_device(device: Device) -> str:
    return ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device


class Mimir:
    """A Two-Tower LCM with its normalizer, SONAR encoder and decoder, and SaT."""

    def __init__(self, model: TwoTowerLCM, normalizer: RobustNormalizer, encoder: TextEncoder,
                 decoder: TextDecoder, sources: ModelSources, info: dict | None = None,
                 generation: GenerationConfig | None = None, device: str = "cpu",
                 cache_dir: str | None = None, max_text_chars: int = MAX_CHARS) -> None:
        if not (normalizer.dim == model.cfg.sonar_dim == encoder.dim):
            raise ValueError(f"the model is for embeddings of dimension {model.cfg.sonar_dim}, "
                             f"the normalizer {normalizer.dim}, SONAR {encoder.dim}: they do "
                             "not belong together")
        self.model, self.normalizer = model.eval(), normalizer
        self.encoder, self.decoder = encoder, decoder
        self.sources, self.info = sources, info or {}
        self.config = generation or GenerationConfig()
        self.device, self.cache_dir, self.max_text_chars = device, cache_dir, max_text_chars
        self.schedule = NoiseSchedule(model.cfg.num_diffusion_steps)
        self._segmenter = None

    # ---- loading ---------------------------------------------------------------------------

    @classmethod
    def from_checkpoint(cls, uri: str, *, normalizer: str | None = None,
                        sonar: SonarFiles | dict[str, str] | None = None,
                        segment_model: str | None = None,
                        instruction_tuned: bool | None = None, device: Device = "auto",
                        cache_dir: str | None = None,
                        generation: GenerationConfig | None = None) -> Mimir:
        """A training checkpoint (jobs.pretrain / jobs.finetune; local or s3://, a checkpoint
        folder or a run folder, whose newest checkpoint is taken). Everything else comes from
        its run_info.json; the keyword arguments override it (`sonar`: all three files, or a
        mapping of those to replace, e.g. {"decoder": URI})."""
        local = checkpoint_files(uri, cache_dir)
        try:
            info = read_run_info(local)
            sources = ModelSources.from_run_info(info)
        except FileNotFoundError:
            if normalizer is None:
                raise
            info, sources = {}, ModelSources(normalizer=normalizer)
        sources = sources.with_overrides(normalizer, sonar, segment_model, instruction_tuned)
        device = pick_device(device)
        info = {**info, "checkpoint": uri, "step": _step(local)}
        return cls.load(load_exported_model(local, device), sources, info, device, cache_dir,
                        generation)

    @classmethod
    def from_pretrained(cls, directory: str | Path, *,
                        sonar: SonarFiles | dict[str, str] | None = None,
                        segment_model: str | None = None, instruction_tuned: bool | None = None,
                        device: Device = "auto", cache_dir: str | None = None,
                        generation: GenerationConfig | None = None) -> Mimir:
        """A folder written by `save_pretrained` / jobs.export (config.json, model.safetensors,
        normalizer.safetensors)."""
        from generation.export import read_folder

        model, sources, info = read_folder(Path(directory))
        sources = sources.with_overrides(None, sonar, segment_model, instruction_tuned)
        device = pick_device(device)
        return cls.load(model.to(device), sources, info, device, cache_dir, generation)

    @classmethod
    def load(cls, model: TwoTowerLCM, sources: ModelSources, info: dict, device: str,
             cache_dir: str | None, generation: GenerationConfig | None) -> Mimir:
        """Load the normalizer and SONAR named by `sources` around a loaded model."""
        normalizer = RobustNormalizer.load(sources.normalizer_file(cache_dir))
        s = sources.sonar
        encoder = TextEncoder.from_uris(s.encoder, s.tokenizer, device=device, cache_dir=cache_dir)
        decoder = TextDecoder.from_uris(s.decoder, s.tokenizer, device=device, cache_dir=cache_dir)
        log.info("loaded %s (%s, instruction-tuned: %s) on %s", info.get("checkpoint", "model"),
                 f"step {info.get('step')}", sources.instruction_tuned, device)
        return cls(model, normalizer, encoder, decoder, sources, info, generation, device,
                   cache_dir)

    def save_pretrained(self, directory: str | Path,
                        dtype: Literal["float32", "bfloat16"] = "float32") -> Path:
        """A self-contained folder (see generation/export.py) that `from_pretrained` loads."""
        from generation.export import write_folder

        return write_folder(Path(directory), self.model, self.normalizer, self.sources,
                            self.info, dtype)

    # ---- the three operations --------------------------------------------------------------

    def check_language(self, lang: str) -> str:
        """`lang` if SONAR's tokenizer has it, else ValueError naming it."""
        self.encoder.tokenizer.lang_idx(lang)
        return lang

    def check_text(self, text: object, where: str = "text") -> str:
        """`text` if it can be a prompt or a sentence, else ValueError saying why."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{where} is empty" if isinstance(text, str)
                             else f"{where} is not a string")
        reason = text_problem(text, self.max_text_chars)
        if reason == "too_long":
            raise ValueError(f"{where} has {len(text)} characters, more than the limit of "
                             f"{self.max_text_chars}")
        if reason is not None:
            raise ValueError(f"{where} cannot be used: {reason}")
        return text

    def split(self, texts: Sequence[str], lang: str | Sequence[str] = "") -> list[list[str]]:
        """Each text's sentences, by SaT (the pipeline's Segmenter and settings). SaT needs no
        language; `lang` is only checked."""
        for lang_ in [lang] if isinstance(lang, str) else lang:
            if lang_:
                self.check_language(lang_)
        for i, t in enumerate(texts):
            self.check_text(t, f"text {i}")
        table = self.segmenter(pa.table({"text": list(texts),
                                         "quarantine": pa.nulls(len(texts), pa.string())}))
        return table["sentences"].to_pylist()

    def embed(self, texts: Sequence[str], lang: str | Sequence[str]) -> np.ndarray:
        """SONAR embeddings [N, D] (float32) of sentences in lang (one, or one per text)."""
        for lang_ in [lang] if isinstance(lang, str) else set(lang):
            self.check_language(lang_)
        return self.encoder.encode(list(texts), lang if isinstance(lang, str) else list(lang))

    def decode(self, embeddings: np.ndarray, lang: str) -> list[str]:
        """Texts of SONAR embeddings [N, D] in lang."""
        self.check_language(lang)
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2 or embeddings.shape[1] != self.encoder.dim:
            raise ValueError(f"expected embeddings of shape [N, {self.encoder.dim}], got "
                             f"{list(embeddings.shape)}")
        if not np.isfinite(embeddings).all():
            raise ValueError("embeddings hold NaN or infinite values")
        return self.decoder.decode(embeddings, lang, self.config.decode_max_tokens or None)

    def prompts(self, texts: Sequence[str], source_lang: str | Sequence[str], split: bool = True,
                frame: bool | None = None) -> list[list[str]]:
        """The prompts as the model sees them: each text split into sentences (or one sentence
        when split is False), framed as a user turn if the model is instruction-tuned (or
        `frame` says so)."""
        langs = _each(source_lang, len(texts), "source_lang")
        if split:
            sentences = self.split(texts, langs)
        else:
            sentences = [[self.check_text(t, f"text {i}")] for i, t in enumerate(texts)]
        return self.framed(sentences, langs, frame)

    def framed(self, sentences: list[list[str]], langs: Sequence[str],
               frame: bool | None = None) -> list[list[str]]:
        """Each prompt's sentences framed as a user turn in its language when the model is
        instruction-tuned (or `frame` says so), else as they are."""
        frame = self.sources.instruction_tuned if frame is None else frame
        return [frame_prompt(s, lang) if frame else s for s, lang in zip(sentences, langs)]

    def generate(self, texts: str | Sequence[str], source_lang: str | Sequence[str],
                 target_lang: str | Sequence[str], *, max_sentences: int | None = None,
                 seed: int = 0, seeds: Sequence[int] | None = None, split: bool = True,
                 frame: bool | None = None) -> list[Generation]:
        """Continue each text in target_lang (languages: one for all texts or one per text).
        Defaults from `self.config` (the paper's sampler, at most 16 sentences)."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        prompts = self.prompts(texts, source_lang, split, frame)
        return self.generate_prompts(prompts, source_lang, target_lang,
                                     max_sentences=max_sentences,
                                     seeds=list(seeds) if seeds is not None
                                     else [seed + i for i in range(len(texts))])

    def generate_prompts(self, prompts: list[list[str]], source_lang: str | Sequence[str],
                         target_lang: str | Sequence[str], *, seeds: list[int],
                         max_sentences: int | None = None) -> list[Generation]:
        """Continue prompts that are already sentences (see `prompts`), in batches of
        config.batch_size, prompt i with noise seeded seeds[i]."""
        n, cfg = len(prompts), self.config
        sources = _each(source_lang, n, "source_lang")
        targets = _each(target_lang, n, "target_lang")
        for lang in set(sources) | set(targets):
            self.check_language(lang)
        if len(seeds) != n:
            raise ValueError(f"{n} prompts but {len(seeds)} seeds")
        decode = partial(self.decoder.decode, max_len=cfg.decode_max_tokens or None)
        out: list[Generation] = []
        for a in range(0, n, cfg.batch_size):
            b = min(n, a + cfg.batch_size)
            sentences = generate(self.model, self.schedule, cfg.sampler, self.normalizer,
                                 self.encoder.encode, decode, prompts[a:b], sources[a:b],
                                 targets[a:b], max_sentences or cfg.max_sentences,
                                 stop_cosine=cfg.stop_cosine, seeds=seeds[a:b])
            out += [Generation(p, s, " ".join(s)) for p, s in zip(prompts[a:b], sentences)]
        return out

    @property
    def segmenter(self):
        """SaT, loaded on first use (SaT and its tokenizer take seconds to load)."""
        if self._segmenter is None:
            if not self.sources.segment_model:
                raise ValueError("no SaT model recorded for this model: pass segment_model=...")
            cfg = SegmentConfig(model=self.sources.segment_model,
                                device="cuda" if self.device == "cuda" else "cpu")
            self._segmenter = cfg.spec(self.cache_dir).build()
        return self._segmenter


def open_model(uri: str, **overrides) -> Mimir:
    """`Mimir.from_pretrained` for a local folder written by jobs.export, else
    `Mimir.from_checkpoint` (a normalizer override applies to checkpoints only)."""
    from generation.export import CONFIG

    if not storage.is_remote(uri) and (Path(uri) / CONFIG).exists():
        normalizer = overrides.pop("normalizer", None)
        if normalizer:
            raise ValueError(f"{uri} is an exported folder with its own normalizer; a "
                             "normalizer override applies to checkpoints only")
        return Mimir.from_pretrained(uri, **overrides)
    return Mimir.from_checkpoint(uri, **overrides)


def _each(value: str | Sequence[str], n: int, name: str) -> list[str]:
    values = [value] * n if isinstance(value, str) else list(value)
    if len(values) != n:
        raise ValueError(f"{n} texts but {len(values)} values of {name}")
    return values


def _step(local: Path) -> int | None:
    path = local / TRAINER_STATE
    return json.loads(path.read_text())["step"] if path.exists() else None
