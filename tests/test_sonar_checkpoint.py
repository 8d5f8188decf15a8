"""Loading official-format SONAR checkpoints: config inference, strictness, errors, URIs."""

from __future__ import annotations

import functools
import http.server
import threading

import json
import shutil

import boto3
import numpy as np
import pytest
import torch

from mimir_model.sonar.checkpoint import load_decoder, load_encoder, resolve_uri
from mimir_model.sonar.config import SonarConfig, SonarShape
from mimir_model.sonar.decoder import SonarDecoder
from mimir_model.sonar.encoder import SonarEncoder
from mimir_model.sonar.pipeline import TextDecoder, TextEncoder
from mimir_model.sonar.tokenizer import SonarTokenizer
from tests.test_sonar_assets import sonar_assets_fixture  # noqa: F401


def test_load_round_trip_infers_the_tiny_config(sonar_assets):
    vocab = SonarTokenizer(sonar_assets["tokenizer"]).vocab_size
    encoder = load_encoder(str(sonar_assets["encoder"]))
    assert encoder.cfg == SonarConfig.tiny(vocab)
    assert not encoder.training
    saved = torch.load(sonar_assets["encoder"], weights_only=True)["model"]
    loaded = encoder.state_dict()
    assert set(loaded) == set(saved)
    for key, tensor in saved.items():
        assert torch.equal(loaded[key], tensor), key

    decoder = load_decoder(f"file://{sonar_assets['decoder']}")
    assert decoder.cfg == SonarConfig.tiny(vocab)
    assert decoder.final_proj.weight is decoder.decoder_frontend.embed.weight


def test_decoder_without_tied_projection_loads(sonar_assets, tmp_path):
    state = torch.load(sonar_assets["decoder"], weights_only=True)["model"]
    state = {k: v.clone() for k, v in state.items() if k != "final_proj.weight"}
    torch.save({"model": state}, tmp_path / "decoder.pt")
    shutil.copy(sonar_assets["decoder"].with_suffix(".json"), tmp_path / "decoder.json")
    decoder = load_decoder(str(tmp_path / "decoder.pt"))
    assert decoder.final_proj.weight is decoder.decoder_frontend.embed.weight
    assert torch.equal(decoder.final_proj.weight, state["decoder_frontend.embed.weight"])


def test_missing_file_names_path_and_builder(tmp_path):
    missing = tmp_path / "nowhere" / "sonar_text_encoder.pt"
    with pytest.raises(FileNotFoundError) as err:
        load_encoder(str(missing))
    assert str(missing) in str(err.value)
    assert "python -m jobs.assets tiny --out DIR" in str(err.value)


def _save_modified(sonar_assets, tmp_path, change) -> str:
    state = {k: v.clone() for k, v in
             torch.load(sonar_assets["encoder"], weights_only=True)["model"].items()}
    change(state)
    torch.save({"model": state}, tmp_path / "bad.pt")
    shutil.copy(sonar_assets["encoder"].with_suffix(".json"), tmp_path / "bad.json")
    return str(tmp_path / "bad.pt")


def test_nan_tensor_is_named(sonar_assets, tmp_path):
    key = "encoder.layers.1.ffn.inner_proj.weight"
    path = _save_modified(sonar_assets, tmp_path, lambda s: s[key].__setitem__((3, 5), torch.nan))
    with pytest.raises(ValueError, match=f"'{key}' contains NaN or Inf"):
        load_encoder(path)


def test_shape_mismatch_and_unexpected_keys_are_named(sonar_assets, tmp_path):
    vocab = SonarTokenizer(sonar_assets["tokenizer"]).vocab_size
    wrong = SonarConfig(model_dim=64, num_layers=2, num_heads=4, ffn_dim=256, vocab_size=vocab)
    with pytest.raises(ValueError, match=r"'encoder.layers.0.ffn.inner_proj.weight' has shape "
                                         r"\(128, 64\), expected \(256, 64\)"):
        load_encoder(str(sonar_assets["encoder"]), cfg=wrong)
    path = _save_modified(sonar_assets, tmp_path,
                          lambda s: s.__setitem__("encoder.extra.weight", torch.zeros(2)))
    with pytest.raises(ValueError, match="encoder.extra.weight"):
        load_encoder(path)
    with pytest.raises(ValueError, match="not a SONAR text decoder"):
        load_decoder(str(sonar_assets["encoder"]))


def test_https_download_is_cached(sonar_assets, tmp_path):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler,
                                directory=str(sonar_assets["tokenizer"].parent))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    uri = f"http://127.0.0.1:{server.server_address[1]}/{sonar_assets['tokenizer'].name}"
    try:
        path = resolve_uri(uri, tmp_path / "cache")
    finally:
        server.shutdown()
        server.server_close()
    assert path.read_bytes() == sonar_assets["tokenizer"].read_bytes()
    assert path.is_relative_to(tmp_path / "cache") and path.name == "sentencepiece.model"
    assert not list((tmp_path / "cache").rglob("*.part"))
    assert resolve_uri(uri, tmp_path / "cache") == path  # server is gone: served from cache


def test_s3_download(sonar_assets, tmp_path, s3_server):
    boto3.client("s3").upload_file(str(sonar_assets["encoder"]), "mimir",
                                   "sonar/sonar_text_encoder.pt")
    boto3.client("s3").upload_file(str(sonar_assets["encoder"].with_suffix(".json")), "mimir",
                                   "sonar/sonar_text_encoder.json")  # its sidecar
    encoder = load_encoder("s3://mimir/sonar/sonar_text_encoder.pt", cache_dir=tmp_path)
    assert encoder.cfg.model_dim == 64
    path = resolve_uri("s3://mimir/sonar/sonar_text_encoder.pt", tmp_path)
    assert path.read_bytes() == sonar_assets["encoder"].read_bytes()


LANGS3 = ["eng_Latn", "fra_Latn", "deu_Latn"]


def _other_shape(sonar_assets, tmp_path, sidecar: dict | None) -> tuple[str, str, SonarConfig]:
    """Official-format encoder and decoder of another size and language list than Meta's
    (model_dim 48 with 2 heads, 3 languages, 64 tokens), with or without sidecars."""
    pieces = SonarTokenizer(sonar_assets["tokenizer"], langs=LANGS3)
    cfg = SonarConfig(model_dim=48, num_layers=1, num_heads=2, ffn_dim=96,
                      vocab_size=pieces.vocab_size, max_seq_len=64, langs=tuple(LANGS3))
    torch.manual_seed(0)
    paths = []
    for name, module in (("enc.pt", SonarEncoder(cfg)), ("dec.pt", SonarDecoder(cfg))):
        torch.save({"model": module.state_dict()}, tmp_path / name)
        if sidecar is not None:
            (tmp_path / name).with_suffix(".json").write_text(json.dumps(sidecar))
        paths.append(str(tmp_path / name))
    return paths[0], paths[1], cfg


def test_a_checkpoint_of_another_shape_without_its_config_is_refused(sonar_assets, tmp_path):
    """No guessed head count (formerly 16 if d >= 1024 else d // 16: 3 here, not 2)."""
    encoder, decoder, _ = _other_shape(sonar_assets, tmp_path, sidecar=None)
    with pytest.raises(ValueError) as err:
        load_encoder(encoder)
    message = str(err.value)
    assert "model_dim 48" in message and "num_heads and max_seq_len" in message
    assert str(tmp_path / "enc.json") in message and "sonar.shape.num_heads" in message
    with pytest.raises(ValueError, match="num_heads"):
        TextDecoder.from_uris(decoder, str(sonar_assets["tokenizer"]))


@pytest.mark.parametrize("source", ["sidecar", "config"])
def test_shape_and_languages_from_a_sidecar_or_the_config(sonar_assets, tmp_path, source):
    """The head count, length limit and language list reach the model and the tokenizer
    through from_uris (formerly: "tokenizer has ... ids but the model ...")."""
    given = {"num_heads": 2, "max_seq_len": 64, "langs": LANGS3}
    encoder, decoder, cfg = _other_shape(sonar_assets, tmp_path,
                                         given if source == "sidecar" else None)
    shape = SonarShape(**given) if source == "config" else None
    text_encoder = TextEncoder.from_uris(encoder, str(sonar_assets["tokenizer"]), shape=shape)
    assert text_encoder.encoder.cfg == cfg
    assert text_encoder.tokenizer.langs == tuple(LANGS3)
    assert text_encoder.tokenizer.max_seq_len == text_encoder.encoder.max_positions == 66
    # The embeddings are those of a 2-head encoder, not of any other head count.
    emb = text_encoder.encode(["Le renard brun saute."], "fra_Latn")
    reference = SonarEncoder(cfg).eval()
    reference.load_state_dict(torch.load(encoder, weights_only=True)["model"])
    ids = text_encoder.tokenizer.encode("Le renard brun saute.", "fra_Latn")
    with torch.inference_mode():
        expected = reference(torch.tensor([ids]), torch.tensor([len(ids)])).numpy()
    np.testing.assert_allclose(emb, expected, atol=1e-5)
    with pytest.raises(ValueError, match="spa_Latn"):
        text_encoder.encode(["Hola."], "spa_Latn")
    text_decoder = TextDecoder.from_uris(decoder, str(sonar_assets["tokenizer"]), shape=shape,
                                         beam_size=3)
    assert text_decoder.decoder.cfg == cfg and text_decoder.tokenizer.langs == tuple(LANGS3)
    nbest = text_decoder.decode_nbest(emb, "deu_Latn", max_len=6)
    assert len(nbest) == 1 and len(nbest[0]) == 3
    assert [score for _, score in nbest[0]] == sorted((s for _, s in nbest[0]), reverse=True)
    assert nbest[0][0][0] == text_decoder.decode(emb, "deu_Latn", max_len=6)[0]


def test_sidecar_that_contradicts_the_weights_or_is_malformed(sonar_assets, tmp_path):
    encoder, _, _ = _other_shape(sonar_assets, tmp_path, {"num_heads": 2, "max_seq_len": 64,
                                                          "langs": LANGS3, "model_dim": 96})
    with pytest.raises(ValueError, match="says model_dim 96 but the weights .* have 48"):
        load_encoder(encoder)
    (tmp_path / "enc.json").write_text('{"num_heads": 5, "max_seq_len": 64}')
    with pytest.raises(ValueError, match="model_dim 48 is not a multiple of num_heads 5"):
        load_encoder(encoder)
    (tmp_path / "enc.json").write_text('{"heads": 2}')
    with pytest.raises(ValueError, match="expected an object with some of the keys"):
        load_encoder(encoder)
