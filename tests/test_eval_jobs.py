"""The evaluation jobs end to end on a local Ray: tiny random models, shipped samples."""

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest
import torch

from evaluation import alignment as alignment_pilot
from evaluation import baseline as baseline_lm
from evaluation import instruct as eval_instruct
from evaluation import next_sentence as eval_pretrain
from evaluation.models import Models
from evaluation.rouge import rouge_l_f1
from mimir_model.sonar.pipeline import TextEncoder
from reports import charts as eval_charts
from jobkit import config as config_io
from mimir_model.normalizer import RobustNormalizer
from mimir_model.two_tower import TwoTowerConfig, TwoTowerLCM, preset
from pipelines.readers import eval_sets
from mimir_model.framing import TURN_MARKERS, frame_prompt
from pipelines.langs import ChineseRelabel
from pipelines.segment import Segmenter

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


@pytest.fixture(scope="module")
def lcm(tmp_path_factory) -> tuple[Path, Path]:
    """A random tiny Two-Tower checkpoint folder (as jobs.pretrain exports) and a normalizer."""
    out = tmp_path_factory.mktemp("lcm")
    torch.manual_seed(0)
    model = TwoTowerLCM(preset("tiny"))
    torch.save(model.state_dict(), out / "model.pt")
    (out / "model_config.json").write_text(json.dumps(asdict(model.cfg)))
    dim = model.cfg.sonar_dim
    RobustNormalizer(torch.zeros(dim), torch.full((dim,), 0.1), 1).save(out / "norm.safetensors")
    return out, out / "norm.safetensors"


def _model_overrides(assets: Path, lcm, tmp: Path) -> list[str]:
    sonar = assets / "sonar"
    return [f"checkpoint={lcm[0]}", f"normalizer={lcm[1]}",
            f"sonar.encoder={sonar / 'sonar_text_encoder.pt'}",
            f"sonar.decoder={sonar / 'sonar_text_decoder.pt'}",
            f"sonar.tokenizer={sonar / 'sentencepiece.model'}", f"segment.model={assets / 'sat'}",
            f"cache_dir={tmp / 'cache'}", "sampler.steps=2",
            "decode_max_tokens=12"]


def _check_png(path: Path) -> None:
    assert path.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_eval_pretrain_from_text(ray_local, tiny_assets, lcm, tmp_path):
    cfg = config_io.load(eval_pretrain.EvalPretrainConfig, CONFIGS / "eval_pretrain_text.yaml",
                         [*_model_overrides(tiny_assets, lcm, tmp_path), "min_sentences=2",
                          "max_documents=1", f"report_dir={tmp_path / 'report'}",
                          # The tiny SaT leaves the 140-character Chinese document whole;
                          # re-split at 64 characters it has several sentences.
                          "segment.max_chars=64"])
    # One input per dataset (each Ray task imports wtpsplit, seconds each), Chinese included.
    cfg.inputs = [i for i in cfg.inputs if i.lang in ("cmn_Hani", "deu_Latn")
                  or i.uri.endswith("wiki40b/fr")]
    inputs = [asdict(i) for i in cfg.inputs]
    result = eval_pretrain.run(cfg)
    report = tmp_path / "report"
    assert json.loads((report / "eval_pretrain.json").read_text())["datasets"] == \
        result["datasets"]
    assert set(result["datasets"]) == {"c4", "multi_eurlex", "wiki40b"}
    for name in result["datasets"]:
        _check_png(report / f"pretrain_{name}.png")
    md = (report / "eval_pretrain.md").read_text()
    assert "## c4" in md and "| **mean** |" in md

    # Expected selection, recomputed here: per input the first document with >= 2 sentences
    # (Chinese relabelled per document first), every prefix 1..n-1 predicts.
    segmenter = Segmenter(str(tiny_assets / "sat"), max_chars=64)
    expected: dict[tuple[str, str], list[int]] = {}
    for inp in inputs:
        table = eval_sets.read_documents(inp["dataset"], inp["uri"], inp["lang"])
        table = segmenter(ChineseRelabel()(table))
        ok = pc.is_null(table["quarantine"]).to_pylist()
        sents = [s for s, good in zip(table["sentences"].to_pylist(), ok) if good]
        langs = [x for x, good in zip(table["lang"].to_pylist(), ok) if good]
        for d in eval_pretrain.select_documents(sents, 2, 1):
            expected.setdefault((inp["dataset"], langs[d]), []).append(len(sents[d]))
    got = {(name, lang): r for name, ds in result["datasets"].items()
           for lang, r in ds["per_language"].items()}
    assert set(got) == set(expected)
    assert ("c4", "zho_Hans") in got  # the cmn_Hani input was relabelled
    # The figures the Ray job merged equal a direct evaluation of each input in this process
    # (same seed); the pairing of prefixes and gold sentences is test_score_prefixes_...'s.
    direct: dict[tuple[str, str], dict] = {}
    for inp in cfg.inputs:
        for lang, s in eval_pretrain.evaluate_input(cfg, inp)["per_language"].items():
            acc = direct.setdefault((inp.dataset, lang), dict.fromkeys(s, 0))
            for k, v in s.items():
                acc[k] += v
    for key, r in got.items():
        assert r["documents"] == len(expected[key])
        assert r["prefixes"] == sum(n - 1 for n in expected[key])
        assert r["l2"] == pytest.approx(direct[key]["l2_sum"] / r["prefixes"], rel=1e-6)
        assert r["round_trip_l2"] == pytest.approx(
            direct[key]["round_trip_l2_sum"] / r["prefixes"], rel=1e-6)
    for ds in result["datasets"].values():
        assert ds["l2"] == pytest.approx(np.mean([r["l2"] for r in ds["per_language"].values()]))
    segment_counts = [c for c in result["counts"] if c["stage"] == "segment"]
    assert sum(c["rows_in"] for c in segment_counts) >= len(inputs)


@pytest.mark.slow
def test_eval_instruct(ray_local, tiny_assets, lcm, tmp_path):
    cfg = config_io.load(eval_instruct.EvalInstructConfig, CONFIGS / "eval_instruct.yaml",
                         [*_model_overrides(tiny_assets, lcm, tmp_path), "max_sentences=2",
                          "model_name=tiny-lcm", f"report_dir={tmp_path / 'report'}"])
    result = eval_instruct.run(cfg)
    report = tmp_path / "report"
    assert result["model"] == "tiny-lcm"
    per = {ds: e["per_language"] for ds, e in result["datasets"].items()}
    assert {ds: sorted(p) for ds, p in per.items()} == {
        "mlqa": ["deu_Latn", "eng_Latn"], "xlsum": ["eng_Latn", "fra_Latn"]}
    assert per["xlsum"]["eng_Latn"]["examples"] == 2 and per["mlqa"]["deu_Latn"]["examples"] == 1
    predictions = [json.loads(x) for x in
                   (report / "eval_instruct_predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 6
    for p in predictions:
        assert p["rouge_l"] == 100 * rouge_l_f1(p["prediction"], p["references"])
    assert result["scorer"] == "mimir"
    # Each language's score is the mean of its examples' scores.
    en = [p["rouge_l"] for p in predictions if p["dataset"] == "xlsum" and p["lang"] == "eng_Latn"]
    assert per["xlsum"]["eng_Latn"]["rouge_l"] == pytest.approx(np.mean(en))
    assert json.loads((report / "eval_instruct.json").read_text())["datasets"] == \
        result["datasets"]
    _check_png(report / "eval_instruct_xlsum.png")
    _check_png(report / "eval_instruct_mlqa.png")
    assert "| tiny-lcm |" in (report / "eval_instruct.md").read_text()


def test_context_framing():
    user, assistant = TURN_MARKERS["fra_Latn"]
    assert frame_prompt(["A.", "B."], "fra_Latn") == [user, "A.", "B.", assistant]
    with pytest.raises(ValueError, match="turn markers"):
        frame_prompt(["A."], "xho_Latn")


@pytest.mark.slow
def test_eval_xlwsd(ray_local, tiny_assets, lcm, tmp_path):
    cfg = config_io.load(eval_instruct.EvalInstructConfig, CONFIGS / "eval_xlwsd.yaml",
                         [*_model_overrides(tiny_assets, lcm, tmp_path), "max_sentences=1",
                          f"report_dir={tmp_path / 'report'}"])
    eval_instruct.check_xlwsd(cfg)
    result = eval_instruct.run(cfg)
    per = result["datasets"]["xlwsd"]["per_language"]
    assert {k: v["examples"] for k, v in per.items()} == {"eng_Latn": 2, "ita_Latn": 1}
    _check_png(tmp_path / "report" / "eval_xlwsd_xlwsd.png")
    bad = eval_instruct.EvalInstructConfig(inputs=[eval_instruct.TaskSet(
        "xlsum", "x", "eng_Latn")])
    with pytest.raises(ValueError, match="xlwsd"):
        eval_instruct.check_xlwsd(bad)


def test_alignment_pilot(ray_local, tiny_assets, tmp_path):
    sonar = tiny_assets / "sonar"
    cfg = config_io.load(alignment_pilot.AlignmentConfig, CONFIGS / "alignment_pilot.yaml", [
        f"sonar.encoder={sonar / 'sonar_text_encoder.pt'}",
        f"sonar.tokenizer={sonar / 'sentencepiece.model'}", "max_pairs=2",
        f"report_dir={tmp_path}", f"cache_dir={tmp_path / 'cache'}"])
    result = alignment_pilot.run(cfg)
    assert {k: v["pairs"] for k, v in result["per_language"].items()} == {
        "fra_Latn": 2, "deu_Latn": 2}
    # Recomputed here from the same pairs and encoder.
    encoder = TextEncoder.from_uris(cfg.sonar.encoder, cfg.sonar.tokenizer)
    for inp in cfg.inputs:
        pairs = eval_sets.read_pairs(inp.uri, inp.lang, 2)
        expected = alignment_pilot.mean_cosine(
            encoder.encode(pairs["english"].to_pylist(), "eng_Latn"),
            encoder.encode(pairs["non_english"].to_pylist(), inp.lang))
        assert result["per_language"][inp.lang]["cosine"] == pytest.approx(expected, abs=1e-6)
    assert json.loads((tmp_path / "alignment_pilot.json").read_text()) == result
    assert "| fra_Latn | 2 |" in (tmp_path / "alignment_pilot.md").read_text()
    _check_png(tmp_path / "alignment_pilot.png")


class _OracleLCM(torch.nn.Module):
    """Predicts the next sentence exactly, for documents whose sentence k is start + k * step
    (identity normalizer): last context sentence + step, conditional and unconditional alike,
    so the sampler returns it."""

    def __init__(self, step: torch.Tensor):
        super().__init__()
        self.step = step
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # a device for the sampler
        self.cfg = TwoTowerConfig(sonar_dim=len(step))  # its noise schedule's length

    def encode_context(self, context):
        return context

    def predict_next(self, ctx_out, lengths, x_t, t, drop):
        return ctx_out[torch.arange(len(lengths)), lengths - 1] + self.step


class _TextCodec:
    """A SONAR stand-in that writes a vector as text in a language and reads it back, and
    refuses to read a text in another language than it was written in."""

    def decode(self, vectors: np.ndarray, lang: str, max_len=None) -> list[str]:
        return [lang + ":" + " ".join(f"{x:.6f}" for x in v) for v in vectors]

    def encode(self, texts: list[str], lang: str) -> np.ndarray:
        assert all(t.startswith(lang + ":") for t in texts), (lang, texts)
        return np.array([[float(x) for x in t.split(":", 1)[1].split()] for t in texts])


def test_score_prefixes_pairs_each_prefix_with_the_sentence_after_it():
    """An oracle model gets L2 = round-trip L2 = 0 exactly when prefix k (sentences 0..k-1)
    is scored against sentence k of its own document, decoded in its own language; pairing
    it with sentence k - 1 or k + 1 would give 1.5 * sqrt(8) or more, with another document's
    sentence more still."""
    dim = 8
    step = torch.full((dim,), 1.5)
    docs = [np.arange(n)[:, None] * 1.5 + 100.0 * d + np.linspace(0, 1, dim)[None]
            for d, n in enumerate((4, 2, 5))]
    langs = ["eng_Latn", "fra_Latn", "deu_Latn"]
    m = Models(_OracleLCM(step).eval(),
               RobustNormalizer(torch.zeros(dim), torch.ones(dim), 1), _TextCodec(), _TextCodec())
    cfg = eval_pretrain.EvalPretrainConfig(prefix_batch=4)
    items, l2, rt_l2 = eval_pretrain.score_prefixes(m, cfg, docs, [4, 2, 4], langs)
    # The document of 5 rows has 4 sentences (its 5th row is "End of text."): 3 prefixes.
    assert items == [(0, 1), (0, 2), (0, 3), (1, 1), (2, 1), (2, 2), (2, 3)]
    np.testing.assert_allclose(l2, 0, atol=1e-4)
    np.testing.assert_allclose(rt_l2, 0, atol=1e-4)
    sums = eval_pretrain.per_language_sums(items, l2, rt_l2, langs)
    assert {k: (v["documents"], v["prefixes"]) for k, v in sums.items()} == {
        "deu_Latn": (1, 3), "eng_Latn": (1, 3), "fra_Latn": (1, 1)}


def test_mean_cosine():
    a = np.array([[1.0, 0.0], [1.0, 1.0]])
    b = np.array([[2.0, 0.0], [-1.0, -1.0]])
    assert alignment_pilot.mean_cosine(a, b) == pytest.approx(0.0)  # (1 + -1) / 2


@pytest.fixture(scope="module")
def tiny_causal_lm(tmp_path_factory) -> Path:
    """A 2-layer Qwen3-style causal LM with a word-level tokenizer and a chat template."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

    out = tmp_path_factory.mktemp("tiny_lm")
    words = sorted(set("the a of in is was what when who mill built museum library".split()))
    vocab = {t: i for i, t in enumerate(["<unk>", "<pad>", "<eos>", *words])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>",
                                        pad_token="<pad>", eos_token="<eos>")
    tokenizer.chat_template = ("{% for m in messages %}{{ m['content'] }} {% endfor %}"
                               "{% if add_generation_prompt %}the {% endif %}")
    tokenizer.save_pretrained(out)
    torch.manual_seed(0)
    cfg = Qwen3Config(vocab_size=len(vocab), hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                      head_dim=16, max_position_embeddings=512, pad_token_id=1,
                      eos_token_id=2, bos_token_id=2)
    Qwen3ForCausalLM(cfg).save_pretrained(out)
    return out


def test_baseline_lm_and_comparison_chart(ray_local, tiny_causal_lm, tmp_path):
    cfg = config_io.load(baseline_lm.BaselineConfig, CONFIGS / "eval_baseline.yaml", [
        f"model={tiny_causal_lm}", "model_name=tiny-qwen", "max_new_tokens=4",
        "dtype=float32", f"report_dir={tmp_path}"])
    result = baseline_lm.run(cfg)
    assert result["model"] == "tiny-qwen" and result["decoding"] == "greedy"
    predictions = [json.loads(x) for x in
                   (tmp_path / "baseline_lm_predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 6
    assert all(len(p["prediction"].split()) <= 4 for p in predictions)
    # Greedy: a second run gives the same outputs.
    again = baseline_lm.run(config_io.load(baseline_lm.BaselineConfig,
                                           CONFIGS / "eval_baseline.yaml", [
        f"model={tiny_causal_lm}", "model_name=tiny-qwen", "max_new_tokens=4",
        "dtype=float32", f"report_dir={tmp_path / 'again'}"]))
    assert again["datasets"] == result["datasets"]

    mimir = {"model": "tiny-lcm", "datasets": {"xlsum": {
        "per_language": {"eng_Latn": {"examples": 2, "rouge_l": 12.5}}, "rouge_l": 12.5}}}
    charts = eval_charts.rouge_report([mimir, result], tmp_path / "compare", "compare")
    assert [c.name for c in charts] == ["compare_mlqa.png", "compare_xlsum.png"]
    for c in charts:
        _check_png(c)
    md = (tmp_path / "compare" / "compare.md").read_text()
    assert "| tiny-lcm | - | - |" in md  # no MLQA result for this model
    assert "| tiny-lcm | 12.50 | - | 12.50 |" in md and "| tiny-qwen |" in md
