"""Text generation with a Two-Tower LCM: embed the prompt, sample sentence embeddings one at a
time, stop at "End of text.", decode into the target language.

`embed(sentences, lang) -> np.ndarray[N, D]` and `decode(embeddings, lang) -> list[str]` are
the SONAR encoder and decoder (or fakes in tests). The model runs in float32 on its own device;
wrap calls in torch.autocast for bf16.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from mimir_model.diffusion import NoiseSchedule, SamplerConfig, sample_next
from mimir_model.framing import END_OF_TEXT, END_OF_TEXT_LANG, STOP_COSINE
from mimir_model.normalizer import RobustNormalizer

Embed = Callable[[list[str], str], np.ndarray]
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


def generate(model, schedule: NoiseSchedule, sampler_cfg: SamplerConfig,
             normalizer: RobustNormalizer, embed: Embed, decode: Decode,
             prompts: list[list[str]], prompt_lang: str, target_lang: str,
             max_sentences: int = 16, end_text: str = END_OF_TEXT,
             stop_cosine: float = STOP_COSINE, min_gen_len: int = 1,
             trim_end_of_text: bool = False,
             generator: torch.Generator | None = None) -> list[list[str]]:
    """Continue each prompt (a list of sentences) by up to max_sentences sentences.

    The LCM reference generator's stop rule: a prompt stops when its generated embedding has
    cosine >= stop_cosine with the embedding of end_text, but not before min_gen_len
    sentences were generated (its min_gen_len=1: the first generated sentence never stops
    generation), and the sentence that stopped it stays in the output unless
    trim_end_of_text (its trim_hypotheses=False). Generated x0 (normalized) joins the context.
    """
    device = next(model.parameters()).device
    end = embed([end_text], END_OF_TEXT_LANG)[0]
    flat = embed([s for p in prompts for s in p], prompt_lang)
    starts = np.cumsum([0] + [len(p) for p in prompts])
    ctx, lengths = _pad([flat[a:b] for a, b in zip(starts[:-1], starts[1:])], normalizer,
                        max_sentences, device)
    outputs: list[list[np.ndarray]] = [[] for _ in prompts]
    active = torch.arange(len(prompts), device=device)
    for i in range(max_sentences):
        if len(active) == 0:
            break
        lens = lengths[active]
        x0 = sample_next(model, schedule, sampler_cfg, ctx[active, :int(lens.max())], lens, generator)
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
    counts = [len(o) for o in outputs]
    if sum(counts) == 0:
        return [[] for _ in prompts]
    texts = decode(np.stack([v for o in outputs for v in o]), target_lang)
    bounds = np.cumsum([0] + counts)
    return [texts[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
