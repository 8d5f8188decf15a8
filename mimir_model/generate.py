"""Text generation with a Two-Tower LCM: embed the prompt, sample sentence embeddings one at a
time, stop at "End of text.", decode into the target language.

`embed(sentences, lang) -> np.ndarray[N, D]` and `decode(embeddings, lang) -> list[str]` are
the SONAR encoder and decoder (or fakes in tests). The model runs in float32 on its own device;
wrap calls in torch.autocast for bf16.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from mimir_model.diffusion import NoiseSchedule, SamplerConfig, sample_next
from mimir_model.framing import END_OF_TEXT, END_OF_TEXT_LANG, STOP_COSINE
from mimir_model.normalizer import RobustNormalizer

Embed = Callable[[list[str], str | list[str]], np.ndarray]  # one language, or one per text
Decode = Callable[[np.ndarray, str], list[str]]


def is_end_of_text(generated: np.ndarray, end_embedding: np.ndarray,
                   threshold: float = STOP_COSINE) -> np.ndarray:
    """cos(generated[i], end_embedding) >= threshold, for raw (denormalized) embeddings [N, D]."""
    g = generated.astype(np.float64)
    e = end_embedding.astype(np.float64)
    cos = g @ e / (np.linalg.norm(g, axis=1) * np.linalg.norm(e) + 1e-12)
    return cos >= threshold


def _pad(embeddings: list[np.ndarray], normalizer: RobustNormalizer, extra: int,
         device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalized contexts, right-padded to [B, max_len + extra, D] with zeros, and their lengths."""
    lengths = torch.tensor([len(e) for e in embeddings], dtype=torch.long)
    ctx = torch.zeros(len(embeddings), int(lengths.max()) + extra, normalizer.dim)
    for b, e in enumerate(embeddings):
        ctx[b, :len(e)] = normalizer.normalize(torch.tensor(e, dtype=torch.float32))
    return ctx.to(device), lengths.to(device)


def predict_next_embeddings(model, schedule: NoiseSchedule, sampler_cfg: SamplerConfig,
                            normalizer: RobustNormalizer, context_embeddings: list[np.ndarray],
                            generator: torch.Generator | None = None) -> np.ndarray:
    """Raw (denormalized) next-sentence embedding [B, D] for each raw context [len_b, D]."""
    device = next(model.parameters()).device
    ctx, lengths = _pad(context_embeddings, normalizer, 0, device)
    x0 = sample_next(model, schedule, sampler_cfg, ctx, lengths, generator)
    return normalizer.denormalize(x0.float()).cpu().numpy()


def prompt_noise(seeds: list[int]) -> list[torch.Generator]:
    """One noise stream per prompt (CPU generators, so a seed gives the same noise on any
    device): what a prompt generates then depends on its seed only, not on the other prompts
    of its batch (up to floating-point rounding)."""
    return [torch.Generator().manual_seed(int(s)) for s in seeds]


def _per_prompt(value: str | Sequence[str], n: int, name: str) -> list[str]:
    values = [value] * n if isinstance(value, str) else list(value)
    if len(values) != n:
        raise ValueError(f"{n} prompts but {len(values)} values of {name}")
    return values


def generate(model, schedule: NoiseSchedule, sampler_cfg: SamplerConfig,
             normalizer: RobustNormalizer, embed: Embed, decode: Decode,
             prompts: list[list[str]], prompt_lang: str | Sequence[str],
             target_lang: str | Sequence[str], max_sentences: int = 16,
             end_text: str = END_OF_TEXT, stop_cosine: float = STOP_COSINE,
             min_gen_len: int = 1, trim_end_of_text: bool = False,
             generator: torch.Generator | None = None,
             seeds: list[int] | None = None) -> list[list[str]]:
    """Continue each prompt (a list of sentences) by up to max_sentences sentences.

    The LCM reference generator's stop rule: a prompt stops when its generated embedding has
    cosine >= stop_cosine with the embedding of end_text, but not before min_gen_len
    sentences were generated (its min_gen_len=1: the first generated sentence never stops
    generation), and the sentence that stopped it stays in the output unless
    trim_end_of_text (its trim_hypotheses=False). Generated x0 (normalized) joins the context.
    prompt_lang and target_lang are one language for all prompts or one per prompt. The noise
    comes from `generator`, one stream for the whole batch, or with `seeds` from one stream per
    prompt (`prompt_noise`).
    """
    device = next(model.parameters()).device
    end = embed([end_text], END_OF_TEXT_LANG)[0]
    sentences = [s for p in prompts for s in p]
    if isinstance(prompt_lang, str):
        flat = embed(sentences, prompt_lang)
    else:
        langs = _per_prompt(prompt_lang, len(prompts), "prompt_lang")
        flat = embed(sentences, [lang for p, lang in zip(prompts, langs) for _ in p])
    targets = _per_prompt(target_lang, len(prompts), "target_lang")
    if seeds is not None and len(seeds) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")
    streams = prompt_noise(seeds) if seeds is not None else None
    starts = np.cumsum([0] + [len(p) for p in prompts])
    ctx, lengths = _pad([flat[a:b] for a, b in zip(starts[:-1], starts[1:])], normalizer,
                        max_sentences, device)
    outputs: list[list[np.ndarray]] = [[] for _ in prompts]
    active = torch.arange(len(prompts), device=device)
    for i in range(max_sentences):
        if len(active) == 0:
            break
        lens = lengths[active]
        noise = (torch.stack([torch.randn(normalizer.dim, generator=streams[b])
                              for b in active.tolist()]) if streams is not None else None)
        x0 = sample_next(model, schedule, sampler_cfg, ctx[active, :int(lens.max())], lens,
                         generator, noise)
        raw = normalizer.denormalize(x0.float()).cpu().numpy()
        ended = is_end_of_text(raw, end, stop_cosine) & (i >= min_gen_len)
        stop = torch.from_numpy(ended).to(device)
        for b, vec, done in zip(active.tolist(), raw, stop.tolist()):
            if not (done and trim_end_of_text):
                outputs[b].append(vec)
        keep = active[~stop]
        ctx[keep, lengths[keep]] = x0[~stop].to(ctx.dtype)
        lengths[keep] += 1
        active = keep
    texts: list[list[str]] = [[] for _ in prompts]
    for lang in dict.fromkeys(targets):  # one decoder call per target language, in order
        rows = [b for b, t in enumerate(targets) if t == lang and outputs[b]]
        if not rows:
            continue
        decoded = iter(decode(np.stack([v for b in rows for v in outputs[b]]), lang))
        for b in rows:
            texts[b] = [next(decoded) for _ in outputs[b]]
    return texts

