"""What a Serve replica does, without Ray (serving/service.py): request checks with their HTTP
status and message, batched answers equal to the Python API's, a failing request isolated."""

from __future__ import annotations

import numpy as np
import pytest

from generation import GenerationConfig, Mimir
from jobkit.config import from_dict
from mimir_model.diffusion import SamplerConfig
from serving.config import ServeAppConfig
from serving.service import MimirService, RequestError, run_batch

LIMITS = dict(max_batch_size=8, max_texts_per_request=4, max_text_chars=1000,
              max_prompt_sentences=3, max_sentences=2, max_sentences_limit=4,
              decode_max_tokens=12, sampler=SamplerConfig(steps=2))


@pytest.fixture(scope="module")
def service(tiny_lcm) -> MimirService:
    return MimirService(ServeAppConfig(model=str(tiny_lcm), device="cpu", **LIMITS))


@pytest.fixture(scope="module")
def mimir(tiny_lcm) -> Mimir:
    return Mimir.from_checkpoint(str(tiny_lcm), device="cpu", generation=GenerationConfig(
        max_sentences=2, decode_max_tokens=12, sampler=SamplerConfig(steps=2)))


def error(fn, *args) -> tuple[int, str]:
    with pytest.raises(RequestError) as e:
        fn(*args)
    return e.value.status, str(e.value)


def test_bad_requests_are_4xx_naming_the_problem(service):
    g, e, d = service.generate_work, service.embed_work, service.decode_work
    unknown = ("unknown language 'xyz_Latn'; expected a SONAR (NLLB-200) code such as "
               "eng_Latn")
    assert error(g, ["Hallo."], "xyz_Latn", "fra_Latn") == (400, f"source_lang: {unknown}")
    assert error(g, ["Hallo."], "deu_Latn", "xyz_Latn") == (400, f"target_lang: {unknown}")
    assert error(e, ["Hallo."], "xyz_Latn") == (400, f"lang: {unknown}")
    assert error(g, [], "deu_Latn", "fra_Latn") == (400, "texts: at least one text is needed")
    assert error(g, ["Hallo.", "  "], "deu_Latn", "fra_Latn") == (400, "texts[1] is empty")
    assert error(g, ["a"] * 5, "deu_Latn", "fra_Latn") == (
        413, "texts: 5 texts, more than the limit of 4 per request")
    assert error(e, ["x" * 1001], "eng_Latn") == (
        413, "texts[0] has 1001 characters, more than the limit of 1000")
    assert error(g, ["Hallo."], "deu_Latn", "fra_Latn", 5) == (
        400, "max_sentences: 5 is not between 1 and 4")
    assert error(g, ["Hallo."], "deu_Latn", "fra_Latn", 0)[0] == 400
    assert error(d, [], "eng_Latn") == (400, "embeddings: at least one embedding is needed")
    assert error(d, [[0.0] * 64, [0.0] * 3], "eng_Latn") == (
        400, "embeddings[1] has 3 values; this model's embeddings have 64")
    assert error(d, [[float("nan")] * 64], "eng_Latn") == (
        400, "embeddings hold NaN or infinite values")
    with pytest.raises(ValueError, match="must not exceed max_batch_size"):
        from_dict(ServeAppConfig, {"model": "x", "max_batch_size": 2, "max_texts_per_request": 3})


def test_a_batch_answers_each_request_as_the_api(service, mimir):
    many = " ".join(f"Satz Nummer {i} ist hier." for i in range(30))
    assert len(mimir.split([many])[0]) > 3  # precondition: SaT makes it too long a prompt
    works = [service.generate_work(["Der Hund schläft. Die Sonne scheint.", "Ein Satz."],
                                   "deu_Latn", "spa_Latn", None, 10),
             service.generate_work(["Le chat dort."], "fra_Latn", "eng_Latn", 1, 3),
             service.generate_work([many], "deu_Latn", "eng_Latn")]
    outcomes = run_batch(service.generate, works)
    assert [o.status for o in outcomes] == [200, 200, 413]
    assert outcomes[2].error == (f"texts[0] has {len(mimir.split([many])[0])} sentences, more "
                                 "than the limit of 3")
    expected = [mimir.generate(["Der Hund schläft. Die Sonne scheint.", "Ein Satz."], "deu_Latn",
                               "spa_Latn", seed=10),
                mimir.generate(["Le chat dort."], "fra_Latn", "eng_Latn", seed=3,
                               max_sentences=1)]
    assert [o.value for o in outcomes[:2]] == [[g.to_dict() for g in e] for e in expected]
    assert len(outcomes[1].value[0]["sentences"]) == 1

    texts = ["Ein Satz.", "Noch ein Satz.", "A sentence."]
    embedded = run_batch(service.embed, [service.embed_work(texts[:2], "deu_Latn"),
                                         service.embed_work(texts[2:], "eng_Latn")])
    vectors = np.concatenate([np.array(o.value, dtype=np.float32) for o in embedded])
    expected_vectors = mimir.embed(texts, ["deu_Latn", "deu_Latn", "eng_Latn"])
    np.testing.assert_allclose(vectors, expected_vectors, atol=1e-5)
    decoded = run_batch(service.decode, [service.decode_work(vectors[:1].tolist(), "ita_Latn"),
                                         service.decode_work(vectors[1:].tolist(), "eng_Latn")])
    assert [o.value for o in decoded] == [mimir.decode(vectors[:1], "ita_Latn"),
                                          mimir.decode(vectors[1:], "eng_Latn")]


def test_a_failing_request_fails_alone_with_500():
    def fn(works: list[str]) -> list[str]:
        if "boom" in works:
            raise RuntimeError("the model broke")
        return [w.upper() for w in works]

    outcomes = run_batch(fn, ["a", "boom", "c"])
    assert [(o.value, o.status) for o in outcomes] == [("A", 200), (None, 500), ("C", 200)]
    assert outcomes[1].error == "RuntimeError: the model broke"
