"""The Serve application over real HTTP on 127.0.0.1 (tiny assets): 48 concurrent requests
through an ordinary client, every one answered, answers equal to the Python API's, bad
requests' codes and messages, a failing request answered 500 while the replica goes on."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

from generation import GenerationConfig, Mimir
from jobkit.config import to_dict
from mimir_model.diffusion import SamplerConfig
from serving.config import ServeAppConfig
from serving.service import MimirService

pytestmark = pytest.mark.slow

LIMITS = dict(max_batch_size=16, max_texts_per_request=4, max_text_chars=1000,
              max_prompt_sentences=3, max_sentences=2, max_sentences_limit=4,
              batch_wait_timeout_s=0.05, decode_max_tokens=12, sampler=SamplerConfig(steps=2))
TEXTS = {"deu_Latn": ["Der Hund schläft im Garten.", "Die Sonne scheint. Es ist warm."],
         "fra_Latn": ["Le chat dort.", "Il pleut depuis ce matin. Nous restons ici."],
         "eng_Latn": ["A short sentence.", "The river runs to the sea."]}
BOOM = "Make the model fail."


class FailingService(MimirService):
    """The real service, except that a prompt BOOM breaks the model call it is part of."""

    def generate(self, works):
        if any(BOOM in w.texts for w in works):
            raise RuntimeError("injected failure")
        return super().generate(works)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(ray_local, tiny_lcm):
    from ray import serve
    from serving.app import MimirDeployment

    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    cfg = ServeAppConfig(model=str(tiny_lcm), device="cpu", **LIMITS)
    serve.run(MimirDeployment.bind(to_dict(cfg), FailingService), name="mimir", route_prefix="/")
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()


@pytest.fixture(scope="module")
def mimir(tiny_lcm) -> Mimir:
    return Mimir.from_checkpoint(str(tiny_lcm), device="cpu", generation=GenerationConfig(
        max_sentences=2, decode_max_tokens=12, sampler=SamplerConfig(steps=2)))


def requests_and_answers(mimir: Mimir) -> list[tuple[str, dict, int, object]]:
    """(path, body, expected status, expected answer) for 48 requests."""
    out = []
    langs = list(TEXTS)
    for i in range(24):  # generate: 1 or 2 prompts, each language into another, own seeds
        src, tgt = langs[i % 3], langs[(i + 1) % 3]
        texts = TEXTS[src][: 1 + i % 2]
        n = 1 + i % 2
        expected = [g.to_dict() for g in mimir.generate(texts, src, tgt, seed=i,
                                                        max_sentences=n)]
        out.append(("/generate", {"texts": texts, "source_lang": src, "target_lang": tgt,
                                  "max_sentences": n, "seed": i}, 200, {"results": expected}))
    for i in range(12):  # embed, then decode the same embeddings
        lang = langs[i % 3]
        texts = TEXTS[lang][i % 2:]
        vectors = mimir.embed(texts, lang)
        out.append(("/embed", {"texts": texts, "lang": lang}, 200, vectors))
        target = langs[(i + 2) % 3]
        out.append(("/decode", {"embeddings": vectors.tolist(), "lang": target}, 200,
                    {"texts": mimir.decode(vectors, target)}))
    assert len(out) == 48
    return out


BAD = [  # (path, body, status, detail)
    ("/generate", {"texts": ["Hallo."], "source_lang": "deu_Latn", "target_lang": "xx_Latn"},
     400, "target_lang: unknown language 'xx_Latn'; expected a SONAR (NLLB-200) code such as "
          "eng_Latn"),
    ("/generate", {"texts": [""], "source_lang": "deu_Latn", "target_lang": "fra_Latn"}, 400,
     "texts[0] is empty"),
    ("/generate", {"texts": ["x" * 1001], "source_lang": "deu_Latn", "target_lang": "fra_Latn"},
     413, "texts[0] has 1001 characters, more than the limit of 1000"),
    ("/embed", {"texts": ["a", "b", "c", "d", "e"], "lang": "eng_Latn"}, 413,
     "texts: 5 texts, more than the limit of 4 per request"),
    ("/generate", {"texts": ["Hallo."], "source_lang": "deu_Latn", "target_lang": "fra_Latn",
                   "max_sentences": 9}, 400, "max_sentences: 9 is not between 1 and 4"),
    ("/decode", {"embeddings": [[0.5, 0.5]], "lang": "eng_Latn"}, 400,
     "embeddings[0] has 2 values; this model's embeddings have 64"),
    ("/generate", {"texts": [BOOM], "source_lang": "eng_Latn", "target_lang": "fra_Latn"}, 500,
     "the server failed to answer this request: RuntimeError: injected failure"),
]


def test_concurrent_requests_answered_as_the_python_api(server, mimir):
    many = " ".join(f"Satz Nummer {i} ist hier." for i in range(30))
    sentences = len(mimir.split([many])[0])
    assert sentences > 3  # precondition: SaT makes it a prompt over the limit
    bad = BAD + [("/generate", {"texts": ["Hallo.", many], "source_lang": "deu_Latn",
                                "target_lang": "fra_Latn"}, 413,
                  f"texts[1] has {sentences} sentences, more than the limit of 3")]
    good = requests_and_answers(mimir)
    calls = good + bad
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:  # all at once
        answers = list(pool.map(lambda c: requests.post(server + c[0], json=c[1], timeout=300),
                                calls))
    assert len(answers) == 56
    for (path, body, status, expected), r in zip(calls, answers):
        assert r.status_code == status, (path, body, r.text)
        if status != 200:
            assert r.json() == {"detail": expected}
        elif path == "/embed":
            got = np.array(r.json()["embeddings"], dtype=np.float32)
            np.testing.assert_allclose(got, expected, atol=1e-5)
        else:
            assert r.json() == expected, (path, body)
    health = requests.get(server + "/health", timeout=30).json()
    assert health["status"] == "ok" and health["sonar_dim"] == 64
    assert health["requests"] >= 48 and health["largest_batch"] > 1  # batched across requests
    assert health["batches"] < health["requests"]


def test_replica_survives_a_failure_and_bad_bodies(server, mimir):
    before = requests.get(server + "/health", timeout=30).json()
    r = requests.post(server + "/generate", json={"texts": [BOOM], "source_lang": "eng_Latn",
                                                   "target_lang": "fra_Latn"}, timeout=60)
    assert r.status_code == 500
    body = {"texts": ["Le chat dort."], "source_lang": "fra_Latn", "target_lang": "deu_Latn"}
    r = requests.post(server + "/generate", json=body, timeout=60)
    assert r.status_code == 200
    assert r.json()["results"] == [g.to_dict() for g in mimir.generate(
        body["texts"], "fra_Latn", "deu_Latn")]
    after = requests.get(server + "/health", timeout=30).json()
    assert after["replica"] == before["replica"]  # the same replica answered
    # A body of the wrong shape: FastAPI's 422, naming the field.
    r = requests.post(server + "/embed", json={"texts": "not a list", "lang": "eng_Latn"},
                      timeout=30)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "texts"]
    r = requests.post(server + "/decode", data=b"not json", timeout=30,
                      headers={"content-type": "application/json"})
    assert r.status_code == 422
