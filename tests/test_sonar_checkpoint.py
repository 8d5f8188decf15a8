"""Loading official-format SONAR checkpoints: config inference, strictness, errors, URIs."""

from __future__ import annotations

import functools
import http.server
import threading

import boto3
import pytest
import torch

from mimir_model.sonar.checkpoint import load_decoder, load_encoder, resolve_uri
from mimir_model.sonar.config import SonarConfig
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
    encoder = load_encoder("s3://mimir/sonar/sonar_text_encoder.pt", cache_dir=tmp_path)
    assert encoder.cfg.model_dim == 64
    path = resolve_uri("s3://mimir/sonar/sonar_text_encoder.pt", tmp_path)
    assert path.read_bytes() == sonar_assets["encoder"].read_bytes()
