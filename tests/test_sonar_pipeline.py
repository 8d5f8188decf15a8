"""TextEncoder / TextDecoder over the tiny assets: batching, order, truncation, decoding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mimir_model.sonar.pipeline import TextDecoder, TextEncoder, length_batches
from mimir_model.sonar.tokenizer import SonarTokenizer
from tests.test_sonar_assets import TEXTS, sonar_assets_fixture  # noqa: F401

SENTENCES = [line for text in TEXTS for line in text.splitlines()]
LANGS = ["eng_Latn"] * 3 + ["fra_Latn"] * 3 + ["deu_Latn"] * 2 + ["spa_Latn"] + ["rus_Cyrl"] * 3 \
    + ["arb_Arab"] * 3 + ["hin_Deva"] * 3 + ["zho_Hans"] * 3


@pytest.fixture(scope="module")
def text_encoder(sonar_assets) -> TextEncoder:
    return TextEncoder.from_uris(str(sonar_assets["encoder"]), str(sonar_assets["tokenizer"]),
                                 max_tokens_per_batch=64)


@pytest.fixture(scope="module")
def text_decoder(sonar_assets) -> TextDecoder:
    return TextDecoder.from_uris(str(sonar_assets["decoder"]), str(sonar_assets["tokenizer"]),
                                 batch_size=3)


def test_batches_preserve_input_order(text_encoder):
    assert len(SENTENCES) == len(LANGS) == 21
    batched = text_encoder.encode(SENTENCES, LANGS)
    assert batched.shape == (21, 64) and batched.dtype == np.float32
    # Several length-sorted batches were needed, each within the token budget.
    ids = [text_encoder.tokenizer.encode(s, lang) for s, lang in zip(SENTENCES, LANGS)]
    batches = length_batches([len(x) for x in ids], 64)
    assert len(batches) > 2 and sorted(i for b in batches for i in b) == list(range(21))
    assert all(len(b) * max(len(ids[i]) for i in b) <= 64 for b in batches)
    for i in (0, 7, 20):
        alone = text_encoder.encode([SENTENCES[i]], LANGS[i])
        np.testing.assert_allclose(batched[i], alone[0], rtol=0, atol=1e-5)
    # The language token matters.
    other = text_encoder.encode([SENTENCES[0]], "fra_Latn")
    assert not np.allclose(other[0], batched[0])


def test_empty_string_encodes_language_and_end_tokens(text_encoder):
    tok = text_encoder.tokenizer
    got = text_encoder.encode(["", "Hello."], "eng_Latn")[0]
    tokens = torch.tensor([[tok.lang_idx("eng_Latn"), tok.eos_idx]])
    with torch.inference_mode():
        expected = text_encoder.encoder(tokens, torch.tensor([2]))[0].numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    assert text_encoder.encode([], "eng_Latn").shape == (0, 64)


def test_truncation_is_counted(sonar_assets, text_encoder):
    tok = SonarTokenizer(sonar_assets["tokenizer"], max_seq_len=8)
    encoder = TextEncoder(text_encoder.encoder, tok)
    long, short = SENTENCES[1], "Hi."
    assert len(text_encoder.tokenizer.encode(long, "eng_Latn")) > 8
    assert len(text_encoder.tokenizer.encode(short, "eng_Latn")) <= 8
    encoder.encode([long, short, long], "eng_Latn")
    assert encoder.num_truncated == 2
    encoder.encode([short], "eng_Latn")
    assert encoder.num_truncated == 2
    # sonar-space truncates at the encoder's 514 positions.
    assert text_encoder.tokenizer.max_seq_len == 514


def test_bad_inputs_are_rejected(text_encoder, text_decoder):
    with pytest.raises(ValueError, match="2 texts but 1 languages"):
        text_encoder.encode(["a", "b"], ["eng_Latn"])
    with pytest.raises(ValueError, match="'en'"):
        text_encoder.encode(["a"], "en")
    with pytest.raises(ValueError, match=r"expected embeddings \[N, 64\]"):
        text_decoder.decode(np.zeros((2, 32), np.float32), "eng_Latn")
    with pytest.raises(ValueError, match="'cmn_Hani'"):
        text_decoder.decode(np.zeros((2, 64), np.float32), "cmn_Hani")


def test_decode_is_deterministic_and_batch_independent(text_encoder, text_decoder):
    emb = text_encoder.encode(SENTENCES[:7], LANGS[:7])
    texts = text_decoder.decode(emb, "fra_Latn", max_len=12)
    assert len(texts) == 7 and all(isinstance(t, str) for t in texts)
    assert any(texts) and len(set(texts)) > 1
    assert text_decoder.decode(emb, "fra_Latn", max_len=12) == texts
    assert [text_decoder.decode(emb[i : i + 1], "fra_Latn", max_len=12)[0]
            for i in range(7)] == texts
    assert text_decoder.decode(emb, "zho_Hans", max_len=12) != texts


def test_default_length_and_beam_search(text_encoder, text_decoder, sonar_assets):
    emb = text_encoder.encode(SENTENCES[:2], LANGS[:2])
    # Default: 1.0 * 64 + 128 tokens at most (prompt included: within 512 positions).
    texts = text_decoder.decode(emb, "eng_Latn")
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
    beam = TextDecoder(text_decoder.decoder, text_decoder.tokenizer, beam_size=3)
    assert beam.decode(emb, "eng_Latn", max_len=12) == beam.decode(emb, "eng_Latn", max_len=12)
