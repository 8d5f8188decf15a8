"""The full-shape offline assets: the real shapes and vocabularies, loaded by the same loaders
as real weights; tokens per character like XLM-R's. Built here at shape "cpu" (the real
tokenizers and vocabularies, tiny widths); the full shape is checked on the meta device."""

from __future__ import annotations

import hashlib
import json

import torch

from jobs.assets import main as assets_main
from mimir_model.sonar.checkpoint import load_decoder, load_state_dict
from mimir_model.sonar.config import SonarConfig
from mimir_model.sonar.encoder import SonarEncoder
from mimir_model.sonar.pipeline import TextEncoder
from offline_assets import full_shape
from offline_assets.full_shape import (SHAPES, XLMR_TOKENS_PER_CHAR, fineweb_sample_texts,
                                       random_state, tokens_per_char)
from pipelines.sat_model import load_sat


def test_full_shape_is_the_real_models():
    shape = SHAPES["full"]
    assert shape.sonar == SonarConfig.basic()  # 24 layers, d 1024, 16 heads, ffn 8192
    with torch.device("meta"):
        encoder = SonarEncoder(shape.sonar)
    assert sum(p.numel() for p in encoder.parameters()) == 766_091_264
    from wtpsplit.models import SubwordXLMConfig, SubwordXLMForTokenClassification
    s = shape.sat
    with torch.device("meta"):
        sat = SubwordXLMForTokenClassification(SubwordXLMConfig(
            vocab_size=s.spm_pieces + 2, hidden_size=s.hidden, num_hidden_layers=s.layers,
            num_attention_heads=s.heads, intermediate_size=s.ffn, max_position_embeddings=514,
            num_labels=1, lookahead=48, lookahead_split_layers=2))
    # DESIGN.md section 3: sat-3l is XLM-R base width, 3 layers, 214M parameters.
    assert round(sum(p.numel() for p in sat.parameters()) / 1e6) == 214


def test_sat_folder_loads_offline_with_an_xlmr_sized_tokenizer(cpu_shape_assets):
    sat = load_sat(str(cpu_shape_assets / "sat"))
    assert len(sat.tokenizer) == 250_002 == sat.model.config.vocab_size
    assert (sat.model.config.hidden_size, sat.model.config.num_hidden_layers) == (32, 2)
    texts = fineweb_sample_texts()
    ours = tokens_per_char(lambda t: len(sat.tokenizer(t, add_special_tokens=False).input_ids),
                           texts)
    assert abs(ours / XLMR_TOKENS_PER_CHAR - 1) < 0.05  # the issue asks for within 20%
    [sentences] = sat.split([texts[0]], threshold=0.02)
    assert len(sentences) > 1
    assert "".join("".join(sentences).split()) == "".join(texts[0].split())


def test_sonar_files_load_through_the_real_loaders(cpu_shape_assets):
    sonar = cpu_shape_assets / "sonar"
    encoder = TextEncoder.from_uris(str(sonar / "sonar_text_encoder.pt"),
                                    str(sonar / "sentencepiece.model"))
    assert encoder.tokenizer.vocab_size == 256_206 == encoder.encoder.cfg.vocab_size
    assert encoder.tokenizer.sp.get_piece_size() == 256_000
    texts = fineweb_sample_texts()
    ours = tokens_per_char(lambda t: len(encoder.tokenizer.sp.encode(t)), texts)
    assert abs(ours / XLMR_TOKENS_PER_CHAR - 1) < 0.05
    vectors = encoder.encode(["Hello world.", "Bonjour."], ["eng_Latn", "fra_Latn"])
    assert vectors.shape == (2, 64) and torch.isfinite(torch.from_numpy(vectors)).all()
    state = load_state_dict(sonar / "sonar_text_encoder.pt")
    assert {t.dtype for t in state.values()} == {torch.bfloat16}
    decoder = load_decoder(str(sonar / "sonar_text_decoder.pt"))
    assert decoder.final_proj.weight is decoder.decoder_frontend.embed.weight
    assert json.loads((cpu_shape_assets / "ASSETS.json").read_text())["shape"]["name"] == "cpu"


def test_fillers_are_never_produced_and_builds_are_deterministic(cpu_shape_assets, tmp_path):
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=str(cpu_shape_assets / "sonar" /
                                                   "sentencepiece.model"))
    used = {i for t in fineweb_sample_texts() for i in sp.encode(t)}
    assert max(used) < 5000 and sp.is_unused(255_999)
    # The same seed gives the same files: the SONAR folder rebuilt elsewhere.
    again = full_shape.build_sonar(tmp_path / "sonar", SHAPES["cpu"],
                                   full_shape.calibrated_pieces(nllb=True), seed=0)
    for name, path in again.items():
        first = cpu_shape_assets / "sonar" / path.name
        assert hashlib.sha256(path.read_bytes()).digest() == \
            hashlib.sha256(first.read_bytes()).digest(), name
    # Rebuilding into the same folder reuses it.
    stamp = (cpu_shape_assets / "ASSETS.json").stat().st_mtime_ns
    assets_main(["full-shape", "--shape", "cpu", "--out", str(cpu_shape_assets)])
    assert (cpu_shape_assets / "ASSETS.json").stat().st_mtime_ns == stamp


def test_random_state_ties_shared_weights_and_keeps_norms_unit():
    from mimir_model.sonar.decoder import SonarDecoder
    cfg = SonarConfig.tiny(1000)
    with torch.device("meta"):
        decoder = SonarDecoder(cfg)
    state = random_state(decoder, seed=1, dtype=torch.bfloat16)
    assert state["final_proj.weight"] is state["decoder_frontend.embed.weight"]
    assert set(state) == set(decoder.state_dict())
    assert torch.equal(state["decoder.layer_norm.weight"], torch.ones(64, dtype=torch.bfloat16))
    assert torch.equal(random_state(decoder, 1, torch.bfloat16)["decoder.layers.0.ffn.inner_proj"
                                                                 ".weight"],
                       state["decoder.layers.0.ffn.inner_proj.weight"])
