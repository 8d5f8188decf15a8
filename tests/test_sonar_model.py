"""SONAR encoder/decoder modules: positions, pooling, state-dict names, cached decoding."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mimir_model.sonar.config import SonarConfig
from mimir_model.sonar.decoder import SonarDecoder
from mimir_model.sonar.encoder import SonarEncoder
from mimir_model.sonar.layers import sinusoid_positions
from mimir_model.sonar.search import beam_search, beam_search_nbest, greedy_search

CFG = SonarConfig.tiny(vocab_size=50)
EOS = 3


def _models(seed: int = 0) -> tuple[SonarEncoder, SonarDecoder]:
    torch.manual_seed(seed)
    encoder, decoder = SonarEncoder(CFG).eval(), SonarDecoder(CFG).eval()
    # Default init makes a tied decoder repeat its input token; wide layers and a likelier
    # EOS give varied outputs of varied lengths, so the search tests can tell rules apart.
    for m in decoder.modules():
        if isinstance(m, nn.Linear) and m is not decoder.final_proj:
            nn.init.normal_(m.weight, std=0.5)
    with torch.no_grad():
        decoder.decoder_frontend.embed.weight[EOS] *= 2
    return encoder, decoder


def test_sinusoid_table_matches_hand_computed_values():
    # dim 4: frequencies exp(-ln(1e4) * i / 1) = [1, 1e-4]; position 0 is step pad_idx + 1 = 2.
    row = sinusoid_positions(0, 1, 4, offset=2)[0]
    expected = [math.sin(2), math.sin(2e-4), math.cos(2), math.cos(2e-4)]
    torch.testing.assert_close(row, torch.tensor(expected), rtol=0, atol=1e-7)
    # dim 8, position 1 (step 3): frequencies 10 ** (-4 i / 3).
    row = sinusoid_positions(1, 1, 8, offset=2)[0]
    freqs = [10 ** (-4 * i / 3) for i in range(4)]
    expected = [math.sin(3 * f) for f in freqs] + [math.cos(3 * f) for f in freqs]
    torch.testing.assert_close(row, torch.tensor(expected), rtol=0, atol=1e-6)
    # A slice of the table equals the same rows of the whole table.
    torch.testing.assert_close(sinusoid_positions(5, 3, 16, 2),
                               sinusoid_positions(0, 8, 16, 2)[5:], rtol=0, atol=0)


def test_frontend_scales_embeddings_and_adds_positions():
    encoder, _ = _models()
    tokens = torch.tensor([[7, 9, 3]])
    expected = (encoder.encoder_frontend.embed.weight[tokens] * 8.0
                + sinusoid_positions(0, 3, 64, 2))
    torch.testing.assert_close(encoder.encoder_frontend(tokens), expected)
    assert encoder.max_positions == 514


def test_state_dict_keys_are_the_official_names():
    encoder, decoder = _models()
    attn = [f"{p}_proj.{w}" for p in "qkv" for w in ("weight", "bias")]
    attn += ["output_proj.weight", "output_proj.bias"]
    norm = ["weight", "bias"]
    ffn = [f"{p}_proj.{w}" for p in ("inner", "output") for w in ("weight", "bias")]
    enc = {"encoder_frontend.embed.weight"} | {f"layer_norm.{w}" for w in norm}
    dec = {"decoder_frontend.embed.weight", "final_proj.weight"}
    dec |= {f"decoder.layer_norm.{w}" for w in norm}
    for n in range(2):
        for stack, keys in (("encoder", enc), ("decoder", dec)):
            layer = f"{stack}.layers.{n}"
            keys |= {f"{layer}.self_attn.{k}" for k in attn}
            keys |= {f"{layer}.self_attn_layer_norm.{w}" for w in norm}
            keys |= {f"{layer}.ffn.{k}" for k in ffn}
            keys |= {f"{layer}.ffn_layer_norm.{w}" for w in norm}
        dec |= {f"decoder.layers.{n}.encoder_decoder_attn.{k}" for k in attn}
        dec |= {f"decoder.layers.{n}.encoder_decoder_attn_layer_norm.{w}" for w in norm}
    assert set(encoder.state_dict()) == enc
    assert set(decoder.state_dict()) == dec
    assert decoder.final_proj.weight is decoder.decoder_frontend.embed.weight


def test_mean_pooling_ignores_padding():
    encoder, _ = _models()
    short = torch.tensor([[20, 11, 12, EOS]])
    alone = encoder(short, torch.tensor([4]))
    for pad_value in (0, 1, 17):  # the pad value must not matter
        batch = torch.full((2, 9), pad_value)
        batch[0, :4] = short[0]
        batch[1] = torch.tensor([21, 5, 6, 7, 8, 9, 10, 13, EOS])
        padded = encoder(batch, torch.tensor([4, 9]))
        torch.testing.assert_close(padded[0], alone[0], rtol=0, atol=1e-6)
    # Pooling is the mean of the final-layer-normed token states.
    x = encoder.encoder_frontend(short)
    for layer in encoder.encoder["layers"]:
        x = layer(x, None)
    torch.testing.assert_close(alone[0], encoder.layer_norm(x)[0].mean(0), rtol=0, atol=1e-6)


def test_incremental_decoding_matches_full_forward():
    _, decoder = _models()
    memory = torch.randn(2, 64)
    tokens = torch.tensor([[EOS, 30, 8, 9, 10, 11], [EOS, 31, 12, 13, 14, 15]])
    full = decoder(tokens, memory)
    state = decoder.start(memory)
    chunks = [decoder.step(tokens[:, :2], state)] + [decoder.step(tokens[:, i : i + 1], state)
                                                     for i in range(2, 6)]
    torch.testing.assert_close(torch.cat(chunks, dim=1), full, rtol=0, atol=1e-5)
    # Causality: later tokens do not change earlier logits.
    other = tokens.clone()
    other[:, 4:] = 40
    torch.testing.assert_close(decoder(other, memory)[:, :4], full[:, :4], rtol=0, atol=1e-5)


@torch.no_grad()
def _naive_greedy(decoder, memory, prompt, max_gen_len, min_gen_len, banned):
    """Full recomputation at every step, with fairseq2's rules written out directly: the
    lengths count the final EOS, so min_gen_len 1 allows an immediate EOS."""
    seq = list(prompt)
    max_seq_len = len(prompt) + max_gen_len
    while True:
        logits = decoder(torch.tensor([seq]), memory[None])[0, -1].clone()
        logits[banned] = -torch.inf
        if len(seq) - len(prompt) < min_gen_len - 1:
            logits[EOS] = -torch.inf
        token = EOS if len(seq) == max_seq_len - 1 else int(logits.argmax())
        seq.append(token)
        if token == EOS:
            return seq[len(prompt):]


def test_greedy_search_matches_naive_decoding():
    _, decoder = _models(seed=0)
    memory = torch.randn(8, 64)
    prompt = [EOS, 30]
    for min_gen_len in (1, 3):
        got = greedy_search(decoder, memory, prompt, EOS, max_gen_len=12,
                            min_gen_len=min_gen_len, banned=[0, 1])
        for row in range(8):
            assert got[row] == _naive_greedy(decoder, memory[row], prompt, 12, min_gen_len,
                                             [0, 1])
            assert min_gen_len <= len(got[row]) <= 12 and got[row][-1] == EOS
            assert EOS not in got[row][:-1] and not {0, 1} & set(got[row])
        lengths = {len(seq) for seq in got}
        assert len(lengths) > 1 and 12 in lengths  # early EOS and forced EOS both happen


def test_beam_search_of_size_one_is_greedy_and_beams_are_deterministic():
    _, decoder = _models(seed=0)
    memory = torch.randn(8, 64)
    greedy = greedy_search(decoder, memory, [EOS, 30], EOS, max_gen_len=10, banned=[0, 1])
    assert beam_search(decoder, memory, [EOS, 30], EOS, max_gen_len=10, beam_size=1,
                       banned=[0, 1]) == greedy
    beams = beam_search(decoder, memory, [EOS, 30], EOS, max_gen_len=10, beam_size=4,
                        banned=[0, 1])
    assert beams == beam_search(decoder, memory, [EOS, 30], EOS, max_gen_len=10,
                                beam_size=4, banned=[0, 1])
    # A batch decodes each row as if alone.
    assert [beam_search(decoder, memory[i : i + 1], [EOS, 30], EOS, max_gen_len=10,
                        beam_size=4, banned=[0, 1])[0] for i in range(8)] == beams
    for seq in beams:
        assert 1 <= len(seq) <= 10 and seq[-1] == EOS and EOS not in seq[:-1]
    assert beams != greedy and len({len(seq) for seq in beams}) > 1


@torch.no_grad()
def _naive_beam(decoder, memory, prompt, max_gen_len, beam_size, banned):
    """fairseq2's beam search written plainly: full recomputation, one hypothesis at a time.
    Returns the finished (score, tokens) in the order they finished."""
    lprobs = torch.log_softmax(decoder(torch.tensor([prompt]), memory[None])[0], dim=-1)
    prompt_score = float(sum(lprobs[i, prompt[i + 1]] for i in range(len(prompt) - 1)))
    beams = [(prompt_score, list(prompt))]
    finished = []
    for step_nr in range(len(prompt), len(prompt) + max_gen_len):
        cands = []
        for score, seq in beams:
            lp = torch.log_softmax(decoder(torch.tensor([seq]), memory[None])[0, -1], dim=-1)
            lp[banned] = -torch.inf
            if step_nr == len(prompt) + max_gen_len - 1:
                lp[torch.arange(lp.numel()) != EOS] = -torch.inf
            cands += [(score + float(lp[t]), seq, t) for t in range(lp.numel())]
        cands = sorted(cands, key=lambda c: -c[0])[: 2 * beam_size]
        for score, seq, t in cands[:beam_size]:
            if t == EOS:
                finished.append((score / step_nr, seq[len(prompt):] + [EOS]))
                if len(finished) == beam_size:
                    return finished
        beams = [(score, seq + [t]) for score, seq, t in cands if t != EOS][:beam_size]
    return finished


def _best(finished: list[tuple[float, list[int]]]) -> list[int]:
    return max(finished, key=lambda h: h[0])[1]


def test_beam_search_matches_naive_beam_search():
    _, decoder = _models(seed=0)
    memory = torch.randn(8, 64)
    got = beam_search(decoder, memory, [EOS, 30], EOS, max_gen_len=8, beam_size=3,
                      banned=[0, 1])
    assert got == [_best(_naive_beam(decoder, memory[i], [EOS, 30], 8, 3, [0, 1]))
                   for i in range(8)]


def test_beam_search_returns_the_n_best_with_their_scores():
    """Every row's beam_size finished hypotheses, best first, with fairseq2's scores (the
    naive search's, to float precision); the first is beam_search's choice."""
    _, decoder = _models(seed=0)
    memory = torch.randn(8, 64)
    nbest = beam_search_nbest(decoder, memory, [EOS, 30], EOS, max_gen_len=8, beam_size=3,
                              banned=[0, 1])
    for i, row in enumerate(nbest):
        naive = sorted(_naive_beam(decoder, memory[i], [EOS, 30], 8, 3, [0, 1]),
                       key=lambda h: -h[0])
        assert [h.tokens for h in row] == [tokens for _, tokens in naive]
        assert [h.score for h in row] == pytest.approx([score for score, _ in naive], abs=1e-5)
        assert len(row) == 3 and row[0].score >= row[1].score >= row[2].score
    assert [row[0].tokens for row in nbest] == beam_search(
        decoder, memory, [EOS, 30], EOS, max_gen_len=8, beam_size=3, banned=[0, 1])


def test_packed_forward_equals_padded_forward():
    encoder, _ = _models()
    lens = torch.tensor([3, 9, 1, 5, 9])
    padded = torch.randint(4, 50, (5, 9))
    packed = torch.cat([padded[i, :n] for i, n in enumerate(lens.tolist())])
    with torch.inference_mode():
        expected = encoder(padded, lens)
        got = encoder.forward_packed(packed, lens)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    # Tokens of one sequence never see another's: a sequence alone gives the same vector.
    with torch.inference_mode():
        alone = encoder.forward_packed(packed[3:12], lens[1:2])
    torch.testing.assert_close(alone[0], expected[1], rtol=0, atol=1e-6)


def test_packing_layout_by_hand():
    from mimir_model.sonar.layers import Packing

    p = Packing.from_lens(torch.tensor([2, 3, 1]))
    assert p.max_len == 3
    assert p.cu_seqlens.tolist() == [0, 2, 5, 6]
    assert p.positions.tolist() == [0, 1, 0, 1, 2, 0]
    assert p.seq_ids.tolist() == [0, 0, 1, 1, 1, 2]
    assert p.slots.tolist() == [0, 1, 3, 4, 5, 6]
