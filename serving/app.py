"""The Ray Serve application: HTTP JSON endpoints over one deployment whose replicas each load
the Two-Tower model, the normalizer, SONAR and SaT once.

    POST /generate  {"texts": [...], "source_lang": "deu_Latn", "target_lang": "fra_Latn",
                     "max_sentences": 4, "seed": 0, "split": true}
                    -> {"results": [{"prompt_sentences", "sentences", "text"}, ...]}
    POST /embed     {"texts": [...], "lang": "eng_Latn"}  -> {"embeddings": [[...], ...]}
    POST /decode    {"embeddings": [[...], ...], "lang": "spa_Latn"}  -> {"texts": [...]}
    GET  /health    -> {"status": "ok", the model, the replica, batch counts}

Concurrent requests are batched (@serve.batch, up to max_batch_size texts or embeddings,
waiting at most batch_wait_timeout_s): one SaT, SONAR and Two-Tower call per batch. A bad
request is answered 4xx with a message naming the problem (400 unknown language, empty text,
bad embeddings or max_sentences; 413 too many texts, characters or sentences; 422 a body of
the wrong shape); a failure inside the model is answered 500 for that request alone and the
replica goes on serving.

    serve run configs/serve/demo.yaml      # the settings: serving/config.py
"""

# No `from __future__ import annotations` here: Serve's ingress rewrites the endpoints'
# signatures, and FastAPI then cannot resolve string annotations of the request bodies.
import asyncio
import logging
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel
from ray import serve
from ray.serve import Application

from jobkit.cli import setup_logging
from jobkit.config import from_dict, to_dict
from serving.config import ServeAppConfig
from serving.service import MimirService, Outcome, RequestError, run_batch
from storage.paths import absolute_paths

log = logging.getLogger(__name__)

api = FastAPI(title="Mimir", description="Generate, embed and decode with a Mimir LCM")


class GenerateRequest(BaseModel):
    texts: list[str]  # prompts, each split into sentences by SaT
    source_lang: str  # SONAR code of the prompts, e.g. deu_Latn
    target_lang: str  # SONAR code of the generated text
    max_sentences: int | None = None  # generated sentences per prompt at most
    seed: int = 0  # text i draws its noise seeded seed + i
    split: bool = True  # false: each text is one sentence


class EmbedRequest(BaseModel):
    texts: list[str]  # sentences
    lang: str  # their SONAR code


class DecodeRequest(BaseModel):
    embeddings: list[list[float]]  # SONAR embeddings
    lang: str  # SONAR code of the texts to decode into


def _size(works: list) -> int:
    """A batch's size in texts (or embeddings), not requests."""
    return sum(w.size for w in works)


@serve.deployment(name="Mimir", max_ongoing_requests=128,
                  ray_actor_options={"num_cpus": 1, "num_gpus": 0})
@serve.ingress(api)
class MimirDeployment:
    def __init__(self, config: dict, service: type = MimirService) -> None:
        setup_logging()
        self.cfg = from_dict(ServeAppConfig, config)
        self.service = service(self.cfg)
        for method in (self._generate, self._embed, self._decode):
            method.set_max_batch_size(self.cfg.max_batch_size)
            method.set_batch_wait_timeout_s(self.cfg.batch_wait_timeout_s)
        self.stats = {"requests": 0, "batches": 0, "largest_batch": 0}
        self.replica = str(serve.get_replica_context().replica_id)
        log.info("replica %s ready: %s", self.replica, self.service.info())

    @api.get("/health")
    def health(self) -> dict[str, Any]:
        return {"status": "ok", "replica": self.replica, **self.service.info(), **self.stats}

    @api.post("/generate")
    async def generate(self, body: GenerateRequest) -> dict[str, Any]:
        work = self._check(self.service.generate_work, body.texts, body.source_lang,
                           body.target_lang, body.max_sentences, body.seed, body.split)
        return {"results": self._answer(await self._generate(work))}

    @api.post("/embed")
    async def embed(self, body: EmbedRequest) -> dict[str, Any]:
        work = self._check(self.service.embed_work, body.texts, body.lang)
        return {"embeddings": self._answer(await self._embed(work))}

    @api.post("/decode")
    async def decode(self, body: DecodeRequest) -> dict[str, Any]:
        work = self._check(self.service.decode_work, body.embeddings, body.lang)
        return {"texts": self._answer(await self._decode(work))}

    @staticmethod
    def _check(check, *args):
        try:
            return check(*args)
        except RequestError as e:
            raise HTTPException(status_code=e.status, detail=str(e)) from None

    @staticmethod
    def _answer(outcome: Outcome) -> Any:
        if outcome.error is not None:
            detail = (outcome.error if outcome.status < 500 else
                      f"the server failed to answer this request: {outcome.error}")
            raise HTTPException(status_code=outcome.status, detail=detail)
        return outcome.value

    async def _run(self, fn, works: list) -> list[Outcome]:
        """A batch in a worker thread (the event loop keeps taking requests meanwhile)."""
        self.stats["requests"] += len(works)
        self.stats["batches"] += 1
        self.stats["largest_batch"] = max(self.stats["largest_batch"], len(works))
        return await asyncio.to_thread(run_batch, fn, works)

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.02, batch_size_fn=_size)
    async def _generate(self, works: list) -> list[Outcome]:
        return await self._run(self.service.generate, works)

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.02, batch_size_fn=_size)
    async def _embed(self, works: list) -> list[Outcome]:
        return await self._run(self.service.embed, works)

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.02, batch_size_fn=_size)
    async def _decode(self, works: list) -> list[Outcome]:
        return await self._run(self.service.decode, works)


def build_app(args: dict) -> Application:
    """The application of a Serve config file's `import_path: serving.app:build_app`; `args`
    are a ServeAppConfig (checked here, local paths made absolute)."""
    cfg = from_dict(ServeAppConfig, dict(args), "the Serve application's args")
    absolute_paths(cfg)
    return MimirDeployment.bind(to_dict(cfg))
