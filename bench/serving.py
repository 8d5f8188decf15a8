"""Serving overhead: requests/s and p50 / p99 latency of the Serve application (serving/app.py)
over HTTP on 127.0.0.1, at a fixed concurrency, beside the same prompts through the Python API
(`Mimir.generate`, batches of the same size) in this process. The ratio is what serving costs
(HTTP, JSON, queueing, the batch wait) or gains (batches across requests).

Every request is one prompt (a sentence, SaT-split like every prompt), continued for at most 2
sentences with the paper's sampler and decoded; prompt i has seed i on both sides. The model:
MIMIR_BENCH_CHECKPOINT (a checkpoint, run or exported folder) if set, else the tiny untrained
checkpoint over the tiny assets (offline_assets/lcm.py), whose decodes are cut at 32 tokens
(an untrained decoder never ends a sentence). On CPU the replica gets one CPU, so the API runs
on one torch thread too.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests
import torch

from generation import GenerationConfig, Mimir
from jobkit.config import to_dict
from offline_assets.lcm import build_tiny_checkpoint
from offline_assets.tiny import build_tiny
from serving.config import ServeAppConfig

log = logging.getLogger(__name__)

NAME = "serving"
TINY = Path("build/assets/tiny")
CHECKPOINT = Path("build/bench/tiny_lcm")
MAX_SENTENCES = 2
SENTENCES = [("Der Hund schläft im Garten.", "deu_Latn"),
             ("Le chat dort sur le canapé.", "fra_Latn"),
             ("The river runs down to the sea.", "eng_Latn"),
             ("El tren sale a las ocho.", "spa_Latn"),
             ("Il libro è sul tavolo.", "ita_Latn"),
             ("Morgen regnet es wieder.", "deu_Latn"),
             ("Nous partons demain matin.", "fra_Latn"),
             ("She reads a letter from home.", "eng_Latn")]
TARGETS = ["eng_Latn", "fra_Latn", "deu_Latn", "spa_Latn"]


def prompts(n: int) -> list[dict]:
    """n request bodies: the fixed sentences in turn, each into another language, seed i."""
    return [{"texts": [SENTENCES[i % len(SENTENCES)][0]],
             "source_lang": SENTENCES[i % len(SENTENCES)][1],
             "target_lang": TARGETS[i % len(TARGETS)], "max_sentences": MAX_SENTENCES,
             "seed": i} for i in range(n)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def time_api(m: Mimir, bodies: list[dict], batch: int) -> tuple[float, list[float]]:
    """(seconds, each prompt's latency): the prompts in batches of `batch`, one call each."""
    latencies: list[float] = []
    t0 = time.perf_counter()
    for a in range(0, len(bodies), batch):
        chunk = bodies[a:a + batch]
        t = time.perf_counter()
        m.generate([b["texts"][0] for b in chunk], [b["source_lang"] for b in chunk],
                   [b["target_lang"] for b in chunk], seeds=[b["seed"] for b in chunk],
                   max_sentences=MAX_SENTENCES)
        latencies += [time.perf_counter() - t] * len(chunk)
    return time.perf_counter() - t0, latencies


def time_serve(url: str, bodies: list[dict], concurrency: int) -> tuple[float, list[float]]:
    """(seconds, each request's latency): `concurrency` clients, every request answered."""
    def post(body: dict) -> float:
        t = time.perf_counter()
        r = requests.post(url, json=body, timeout=600)
        if r.status_code != 200:
            raise RuntimeError(f"the server answered {r.status_code}: {r.text}")
        return time.perf_counter() - t

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        latencies = list(pool.map(post, bodies))
    return time.perf_counter() - t0, latencies


def run(quick: bool) -> list[dict]:
    import ray
    from ray import serve

    from jobkit.cluster import init_ray
    from serving.app import MimirDeployment

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    # Absolute paths: the replica's working directory is not this one.
    checkpoint = os.environ.get("MIMIR_BENCH_CHECKPOINT") or str(
        build_tiny_checkpoint(CHECKPOINT.resolve(), build_tiny(TINY.resolve())))
    tiny = "MIMIR_BENCH_CHECKPOINT" not in os.environ
    concurrency = 8 if quick else 32
    bodies = prompts(concurrency * (2 if quick else 4))
    decode_tokens = 32 if tiny else 0
    cfg = ServeAppConfig(model=checkpoint, device=device, max_batch_size=concurrency,
                         max_texts_per_request=1, max_sentences=MAX_SENTENCES,
                         decode_max_tokens=decode_tokens)

    threads = torch.get_num_threads()
    if not cuda:
        torch.set_num_threads(1)  # as the replica (num_cpus 1: Ray sets its OMP threads)
    try:
        m = Mimir.from_checkpoint(checkpoint, device=device, generation=GenerationConfig(
            max_sentences=MAX_SENTENCES, decode_max_tokens=decode_tokens,
            batch_size=concurrency))
        time_api(m, bodies[:concurrency], concurrency)  # warm-up: SaT loads, kernels chosen
        api_s, api_lat = time_api(m, bodies, concurrency)
    finally:
        torch.set_num_threads(threads)
    del m

    started = not ray.is_initialized()
    init_ray(local_cpus=4)
    port = _free_port()
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        app = MimirDeployment.options(ray_actor_options={"num_cpus": 1,
                                                         "num_gpus": 1 if cuda else 0})
        serve.run(app.bind(to_dict(cfg)), name="bench", route_prefix="/")
        url = f"http://127.0.0.1:{port}/generate"
        time_serve(url, bodies[:concurrency], concurrency)  # warm-up
        serve_s, serve_lat = time_serve(url, bodies, concurrency)
        health = requests.get(f"http://127.0.0.1:{port}/health", timeout=60).json()
    finally:
        serve.shutdown()
        if started:
            ray.shutdown()

    n = len(bodies)
    config = f"{n} prompts, concurrency {concurrency}, 1 replica"
    device_name = torch.cuda.get_device_name() if cuda else "cpu"
    model = (f"tiny untrained checkpoint, decodes cut at {decode_tokens} tokens" if tiny
             else checkpoint)

    def row(metric: str, value: float, note: str = "") -> dict:
        return {"benchmark": NAME, "config": config, "device": device_name, "metric": metric,
                "value": value, "note": note}

    ms = lambda values, q: 1000 * float(np.percentile(values, q))  # noqa: E731
    log.info("serving: %.1f s through Serve, %.1f s through the API for %d prompts "
             "(largest Serve batch %d)", serve_s, api_s, n, health["largest_batch"])
    return [
        row("serve requests/s", n / serve_s,
            f"HTTP POST /generate, one prompt per request, {concurrency} clients; {model}; "
            f"paper sampler, at most {MAX_SENTENCES} sentences; largest Serve batch "
            f"{health['largest_batch']} (batch_wait_timeout_s {cfg.batch_wait_timeout_s})"),
        row("serve p50 latency ms", ms(serve_lat, 50)),
        row("serve p99 latency ms", ms(serve_lat, 99)),
        row("api prompts/s", n / api_s,
            f"Mimir.generate in one process, batches of {concurrency}; a prompt's latency is "
            "its batch's" + ("" if cuda else "; 1 torch thread, as the replica")),
        row("api p50 latency ms", ms(api_lat, 50)),
        row("api p99 latency ms", ms(api_lat, 99)),
        row("serve / api throughput", api_s / serve_s,
            "below 1: what serving costs (HTTP, JSON, queueing, batch waits)"),
    ]
