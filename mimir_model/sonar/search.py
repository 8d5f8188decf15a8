"""Greedy and beam search over SonarDecoder, with fairseq2's step rules.

Rules (fairseq2 BeamSearchSeq2SeqGenerator, the generator sonar-space uses): the prompt is fed
first (all but its last token as one prefill chunk); at each step log-softmax in float32;
banned ids (pad) never win; EOS is not allowed before `min_gen_len` tokens; the last possible
position is forced to EOS. Returned sequences exclude the prompt and end with EOS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from mimir_model.sonar.decoder import DecoderState, SonarDecoder


def _step_lprobs(logits: Tensor, step_nr: int, min_seq_len: int, max_seq_len: int,
                 eos_idx: int, banned: Sequence[int]) -> Tensor:
    lprobs = F.log_softmax(logits.float(), dim=-1)
    if step_nr == max_seq_len - 1:
        forced = torch.full_like(lprobs, -torch.inf)
        forced[:, eos_idx] = lprobs[:, eos_idx]
        return forced
    lprobs[:, list(banned)] = -torch.inf
    if step_nr < min_seq_len - 1:
        lprobs[:, eos_idx] = -torch.inf
    return lprobs


def _prefill(decoder: SonarDecoder, memory: Tensor, prompt: Sequence[int],
             max_gen_len: int) -> tuple[DecoderState, Tensor, Tensor, int]:
    """Feed prompt[:-1]; return state, prompt tensor [B, P], prompt log-prob [B], max_seq_len."""
    batch = memory.size(0)
    prompt_t = torch.tensor(prompt, device=memory.device).expand(batch, -1)
    state = decoder.start(memory)
    score = torch.zeros(batch, device=memory.device)
    if len(prompt) > 1:
        lprobs = F.log_softmax(decoder.step(prompt_t[:, :-1], state).float(), dim=-1)
        score = lprobs.gather(-1, prompt_t[:, 1:, None]).squeeze(-1).sum(-1)
    max_seq_len = min(decoder.max_positions, len(prompt) + max_gen_len)
    if len(prompt) >= max_seq_len:
        raise ValueError(f"prompt of {len(prompt)} tokens leaves no room below {max_seq_len}")
    return state, prompt_t, score, max_seq_len


@torch.inference_mode()
def greedy_search(decoder: SonarDecoder, memory: Tensor, prompt: Sequence[int], eos_idx: int,
                  max_gen_len: int, min_gen_len: int = 1,
                  banned: Sequence[int] = ()) -> list[list[int]]:
    """Argmax decoding of each row of memory [B, d] (fairseq2 beam search with beam size 1)."""
    state, prompt_t, _, max_seq_len = _prefill(decoder, memory, prompt, max_gen_len)
    min_seq_len = min(max_seq_len, len(prompt) + min_gen_len)
    rows = torch.arange(memory.size(0), device=memory.device)  # original row of each active row
    out: list[list[int]] = [[] for _ in range(memory.size(0))]
    last = prompt_t[:, -1:]
    for step_nr in range(len(prompt), max_seq_len):
        logits = decoder.step(last, state)[:, -1]
        tokens = _step_lprobs(logits, step_nr, min_seq_len, max_seq_len, eos_idx,
                              banned).argmax(-1)
        for row, token in zip(rows.tolist(), tokens.tolist()):
            out[row].append(token)
        alive = tokens != eos_idx
        if not alive.any():
            break
        if not alive.all():
            keep = alive.nonzero().squeeze(1)
            state.reorder(keep)
            rows, tokens = rows[keep], tokens[keep]
        last = tokens[:, None]
    return out


@dataclass(frozen=True)
class Hypothesis:
    tokens: list[int]  # generated ids (without the prompt), ending with EOS
    score: float  # fairseq2's: cumulative log-probability / (scored tokens) ** len_penalty


def beam_search(decoder: SonarDecoder, memory: Tensor, prompt: Sequence[int], eos_idx: int,
                max_gen_len: int, beam_size: int = 5, min_gen_len: int = 1,
                len_penalty: float = 1.0, banned: Sequence[int] = ()) -> list[list[int]]:
    """The best hypothesis of each row of memory (beam_search_nbest's first)."""
    return [hyps[0].tokens for hyps in beam_search_nbest(
        decoder, memory, prompt, eos_idx, max_gen_len, beam_size, min_gen_len, len_penalty,
        banned)]


@torch.inference_mode()
def beam_search_nbest(decoder: SonarDecoder, memory: Tensor, prompt: Sequence[int],
                      eos_idx: int, max_gen_len: int, beam_size: int = 5, min_gen_len: int = 1,
                      len_penalty: float = 1.0,
                      banned: Sequence[int] = ()) -> list[list[Hypothesis]]:
    """fairseq2's standard beam search: each row's beam_size finished hypotheses with their
    scores, best first (among equal scores the earlier finished, as in fairseq2).

    Each step takes the best 2 * beam_size (beam, token) candidates by cumulative log-prob;
    EOS candidates among the first beam_size finish a hypothesis scored
    cum_logprob / (scored tokens) ** len_penalty, where the scored tokens include the prompt's
    language token; the first beam_size others continue. A sentence is done once it has
    beam_size hypotheses.
    """
    state, prompt_t, scores, max_seq_len = _prefill(decoder, memory, prompt, max_gen_len)
    min_seq_len = min(max_seq_len, len(prompt) + min_gen_len)
    device = memory.device
    seqs = torch.zeros(memory.size(0), max_seq_len, dtype=torch.long, device=device)
    seqs[:, : len(prompt)] = prompt_t
    beam_sizes = [1] * memory.size(0)
    owners = list(range(memory.size(0)))  # the sentence of each beam group
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(memory.size(0))]
    for step_nr in range(len(prompt), max_seq_len):
        logits = decoder.step(seqs[:, step_nr - 1 : step_nr], state)[:, -1]
        lprobs = _step_lprobs(logits, step_nr, min_seq_len, max_seq_len, eos_idx, banned)
        vocab = lprobs.size(-1)
        cand = lprobs + scores[:, None]
        next_rows: list[Tensor] = []
        next_tokens: list[Tensor] = []
        next_scores: list[Tensor] = []
        next_sizes: list[int] = []
        next_owners: list[int] = []
        offset = 0
        for size, owner in zip(beam_sizes, owners):
            block = cand[offset : offset + size].reshape(-1)
            top_scores, top_idx = block.topk(min(2 * beam_size, block.numel()))
            top_rows, top_tokens = top_idx // vocab + offset, top_idx % vocab
            is_eos = (top_tokens == eos_idx).tolist()
            done = False
            for j in range(min(beam_size, len(is_eos))):
                if is_eos[j]:
                    row = int(top_rows[j])
                    hyp = seqs[row, len(prompt) : step_nr].tolist() + [eos_idx]
                    finished[owner].append((float(top_scores[j]) / step_nr**len_penalty, hyp))
                    if len(finished[owner]) == beam_size:
                        done = True
                        break
            offset += size
            if done:
                continue
            cont = [j for j, e in enumerate(is_eos) if not e][:beam_size]
            next_rows.append(top_rows[cont])
            next_tokens.append(top_tokens[cont])
            next_scores.append(top_scores[cont])
            next_sizes.append(len(cont))
            next_owners.append(owner)
        if not next_sizes:
            break
        rows = torch.cat(next_rows)
        state.reorder(rows)
        seqs = seqs.index_select(0, rows)
        seqs[:, step_nr] = torch.cat(next_tokens)
        scores = torch.cat(next_scores)
        beam_sizes, owners = next_sizes, next_owners
    # Stable sort: among equal scores the earlier finished hypothesis first.
    return [sorted((Hypothesis(tokens, score) for score, tokens in hyps), key=lambda h: -h.score)
            for hyps in finished]
