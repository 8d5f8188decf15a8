"""Using a model: jobs.generate against the Python API and the instruction evaluation's
generation, and jobs.export -> Mimir.from_pretrained against the checkpoint (tiny assets)."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from evaluation import instruct as eval_instruct
from generation import GenerationConfig, Mimir
from generation.export import ExportConfig, export
from jobkit import config as config_io
from jobs import export as export_job
from jobs import generate as generate_job
from mimir_model.diffusion import SamplerConfig
from mimir_model.framing import TURN_MARKERS
from pipelines.readers.eval_sets import read_tasks

ROOT = Path(__file__).resolve().parent.parent
# Few sampler steps and short decodes: the mechanics are the paper's, the run is quick.
FAST = ["sampler.steps=2", "decode_max_tokens=12", "max_sentences=2"]
FAST_CONFIG = GenerationConfig(max_sentences=2, decode_max_tokens=12,
                               sampler=SamplerConfig(steps=2))
PROMPTS = [{"text": "Der Hund schläft im Garten. Die Sonne scheint.", "lang": "deu_Latn"},
           {"text": "Le chat dort. Il fait beau aujourd'hui.", "lang": "fra_Latn"},
           {"text": "Ein kurzer Satz.", "lang": "deu_Latn", "seed": 41}]


def run_generate(monkeypatch, tmp_path: Path, args: list[str], stdin: str) -> list[dict]:
    """`python -m jobs.generate ARGS < stdin` in this process; the output lines."""
    out = tmp_path / "out.jsonl"
    monkeypatch.setattr(sys, "argv", ["generate", *args, "--output", str(out),
                                      f"cache_dir={tmp_path / 'cache'}", *FAST])
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    generate_job.main()
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_jobs_generate_two_languages_into_a_third_as_the_api(tiny_lcm, monkeypatch, tmp_path):
    stdin = "".join(json.dumps(p) + "\n" for p in PROMPTS)
    rows = run_generate(monkeypatch, tmp_path, ["--checkpoint", str(tiny_lcm),
                                                "--target-lang", "spa_Latn"], stdin)
    assert [(r["index"], r["lang"], r["target_lang"], r["seed"]) for r in rows] == [
        (0, "deu_Latn", "spa_Latn", 0), (1, "fra_Latn", "spa_Latn", 1),
        (2, "deu_Latn", "spa_Latn", 41)]
    m = Mimir.from_checkpoint(str(tiny_lcm), device="cpu", generation=FAST_CONFIG)
    assert [r["prompt_sentences"] for r in rows] == m.split([p["text"] for p in PROMPTS])
    for r, p in zip(rows, PROMPTS):
        # One prompt at a time through the API: the job's batch of three does not change it.
        (g,) = m.generate(p["text"], p["lang"], "spa_Latn", seeds=[r["seed"]])
        assert (r["sentences"], r["text"]) == (g.sentences, g.text)
        assert 1 <= len(r["sentences"]) <= 2 and r["text"] == " ".join(r["sentences"])
    # Another seed draws other noise (the untrained model's text shows it).
    assert m.generate(PROMPTS[0]["text"], "deu_Latn", "spa_Latn", seed=7)[0].text != rows[0]["text"]
    # Plain lines with --source-lang: the same prompt and seed, the same result.
    plain = run_generate(monkeypatch, tmp_path, ["--checkpoint", str(tiny_lcm), "--source-lang",
                                                 "deu_Latn", "--target-lang", "spa_Latn"],
                         PROMPTS[0]["text"] + "\n")
    assert plain[0]["text"] == rows[0]["text"]


def test_jobs_generate_equals_the_instruction_evaluation(tiny_lcm_instruct, monkeypatch,
                                                         tmp_path):
    """The same prompts and seed through jobs.eval_instruct's generation and jobs.generate
    (which frames them because the checkpoint records instruction tuning)."""
    info = json.loads((tiny_lcm_instruct / "run_info.json").read_text())
    sonar = info["models"]["sonar"]
    cfg = config_io.load(eval_instruct.EvalInstructConfig, ROOT / "configs/eval_instruct.yaml", [
        f"checkpoint={tiny_lcm_instruct}", f"normalizer={info['normalizer']['uri']}",
        *[f"sonar.{k}={sonar[k]}" for k in ("encoder", "decoder", "tokenizer")],
        f"segment.model={info['models']['segment_model']}", f"cache_dir={tmp_path / 'cache'}",
        "max_examples=2", "batch_size=1", "seed=3", *FAST])
    inp = next(i for i in cfg.inputs if i.dataset == "xlsum" and i.lang == "eng_Latn")
    predictions = eval_instruct.evaluate_input(cfg, inp)["predictions"]
    assert len(predictions) == 2
    texts = read_tasks(inp.dataset, inp.uri, inp.lang, 2)["text"].to_pylist()
    stdin = "".join(json.dumps({"text": t}) + "\n" for t in texts)
    rows = run_generate(monkeypatch, tmp_path, [
        "--checkpoint", str(tiny_lcm_instruct), "--source-lang", "eng_Latn", "--target-lang",
        "eng_Latn", "--seed", "3"], stdin)
    user, assistant = TURN_MARKERS["eng_Latn"]
    for r in rows:
        assert r["prompt_sentences"][0] == user and r["prompt_sentences"][-1] == assistant
    assert [r["text"] for r in rows] == [p["prediction"] for p in predictions]


@pytest.fixture(scope="module")
def exported(tiny_lcm, tmp_path_factory) -> Path:
    return export(ExportConfig(checkpoint=str(tiny_lcm),
                               out=str(tmp_path_factory.mktemp("export") / "mimir")))


def test_export_then_from_pretrained_generates_identically(tiny_lcm, exported):
    assert sorted(p.name for p in exported.iterdir()) == [
        "README.md", "config.json", "model.safetensors", "normalizer.safetensors"]
    card = (exported / "README.md").read_text()
    info = json.loads((tiny_lcm / "run_info.json").read_text())
    assert info["models"]["sonar"]["encoder"] in card and info["models"]["segment_model"] in card
    a = Mimir.from_checkpoint(str(tiny_lcm), device="cpu", generation=FAST_CONFIG)
    b = Mimir.from_pretrained(exported, device="cpu", generation=FAST_CONFIG)
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k]), k
    texts = [p["text"] for p in PROMPTS]
    langs = [p["lang"] for p in PROMPTS]
    assert b.generate(texts, langs, "eng_Latn", seed=5) == a.generate(texts, langs, "eng_Latn",
                                                                        seed=5)
    vectors = a.embed(["Ein Satz."], "deu_Latn")
    np.testing.assert_array_equal(b.embed(["Ein Satz."], "deu_Latn"), vectors)
    assert b.decode(vectors, "ita_Latn") == a.decode(vectors, "ita_Latn")


def test_export_job_bfloat16(tiny_lcm, tmp_path, monkeypatch):
    out = tmp_path / "bf16"
    monkeypatch.setattr(sys, "argv", ["export", "--checkpoint", str(tiny_lcm), "--out", str(out),
                                      "--dtype", "bfloat16", f"cache_dir={tmp_path / 'cache'}"])
    export_job.main()
    weights = load_file(str(out / "model.safetensors"))
    state = torch.load(tiny_lcm / "model.pt", map_location="cpu", weights_only=True)
    assert set(weights) == set(state)
    for k, v in state.items():
        assert weights[k].dtype == torch.bfloat16 and torch.equal(weights[k], v.bfloat16()), k
    b = Mimir.from_pretrained(out, device="cpu", generation=FAST_CONFIG)
    assert all(torch.equal(p, state[k].bfloat16().float())
               for k, p in b.model.state_dict().items())
