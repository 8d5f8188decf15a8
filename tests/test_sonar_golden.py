"""Parity of the native SONAR code with sonar-space 0.5.0 / fairseq2 0.8.1.

The fixtures in tests/data/sonar_golden/ were written by its make_golden.py in a separate
reference venv: official-format random-weight checkpoints built by sonar-space's factories,
a SentencePiece model, and the reference outputs for 40 sentences in 13 languages.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mimir_model.sonar.checkpoint import load_decoder, load_encoder
from mimir_model.sonar.config import SonarConfig
from mimir_model.sonar.pipeline import TextDecoder, TextEncoder
from mimir_model.sonar.tokenizer import SonarTokenizer

GOLDEN = Path(__file__).parent / "data" / "sonar_golden"
ENCODER, DECODER = GOLDEN / "sonar_text_encoder.pt", GOLDEN / "sonar_text_decoder.pt"
SPM = GOLDEN / "sentencepiece.model"


@pytest.fixture(scope="module")
def golden() -> dict:
    return json.loads((GOLDEN / "golden.json").read_text())


@pytest.fixture(scope="module")
def text_encoder() -> TextEncoder:
    return TextEncoder.from_uris(str(ENCODER), str(SPM), max_tokens_per_batch=2048)


def test_fixture_covers_the_cases(golden):
    sentences = golden["sentences"]
    assert len(sentences) == 40 and len({s["lang"] for s in sentences}) >= 8
    assert "" in [s["text"] for s in sentences]
    assert sum(s["truncated"] for s in sentences) == 1
    assert sorted(golden["decodes"]) == sorted(f"{lang}/{search}" for lang in
                                               ("eng_Latn", "fra_Latn", "zho_Hant")
                                               for search in ("greedy", "beam"))


def test_checkpoints_load_with_the_inferred_config(golden):
    cfg = golden["config"]
    expected = SonarConfig(model_dim=cfg["model_dim"], num_layers=cfg["num_layers"],
                           num_heads=cfg["num_heads"], ffn_dim=cfg["ffn_dim"],
                           vocab_size=cfg["vocab_size"])
    assert load_encoder(str(ENCODER)).cfg == expected
    assert load_decoder(str(DECODER)).cfg == expected
    assert load_encoder(str(ENCODER)).max_positions == cfg["encoder_max_len"] == 514


def test_token_ids_are_identical(golden):
    tok = SonarTokenizer(SPM, max_seq_len=golden["config"]["encoder_max_len"])
    assert tok.vocab_size == golden["config"]["vocab_size"]
    for s in golden["sentences"]:
        ids = tok.encode(s["text"], s["lang"])
        assert ids == s["ids"], (s["lang"], s["text"][:40])
        assert tok.is_truncated(ids) == s["truncated"]


def test_embeddings_match(golden, text_encoder):
    sentences = golden["sentences"]
    expected = np.load(GOLDEN / "embeddings.npy")
    got = text_encoder.encode([s["text"] for s in sentences], [s["lang"] for s in sentences])
    assert got.shape == expected.shape == (40, golden["config"]["model_dim"])
    assert np.abs(got - expected).max() <= 1e-5
    assert text_encoder.num_truncated == 1
    # The padded path (one padded batch of all 40) gives the same vectors.
    ids = [s["ids"] for s in sentences]
    lens = torch.tensor([len(x) for x in ids])
    tokens = torch.zeros(len(ids), int(lens.max()), dtype=torch.long)
    for row, x in enumerate(ids):
        tokens[row, : len(x)] = torch.tensor(x)
    with torch.inference_mode():
        padded = text_encoder.encoder(tokens, lens).numpy()
    assert np.abs(padded - expected).max() <= 1e-5


@pytest.mark.parametrize("search", ["greedy", "beam"])
def test_decoded_ids_and_texts_match(golden, search):
    embeddings = np.load(GOLDEN / "embeddings.npy")
    # sonar-space's defaults: beam 5 (EmbeddingToTextModelPipeline.predict), greedy = beam 1.
    beam_size = 1 if search == "greedy" else 5
    decoder = TextDecoder.from_uris(str(DECODER), str(SPM), beam_size=beam_size)
    for lang in ("eng_Latn", "fra_Latn", "zho_Hant"):
        expected = golden["decodes"][f"{lang}/{search}"]
        ids = decoder.decode_ids(embeddings, lang)
        assert ids == expected["ids"], lang
        assert [decoder.tokenizer.decode(x) for x in ids] == expected["texts"], lang


def test_sonar_space_backend_is_selectable():
    with pytest.raises(ValueError, match="unknown SONAR backend 'fairseq'"):
        TextEncoder.from_uris(str(ENCODER), str(SPM), backend="fairseq")
    try:
        import sonar  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install sonar-space==0.5.0"):
            TextEncoder.from_uris(str(ENCODER), str(SPM), backend="sonar-space")
        return
    # In the reference venv: the same files through sonar-space give the golden vectors.
    encoder = TextEncoder.from_uris(str(ENCODER), str(SPM), backend="sonar-space")
    sentences = json.loads((GOLDEN / "golden.json").read_text())["sentences"]
    got = encoder.encode([s["text"] for s in sentences], [s["lang"] for s in sentences])
    assert np.abs(got - np.load(GOLDEN / "embeddings.npy")).max() <= 1e-5
    assert encoder.num_truncated == 1
