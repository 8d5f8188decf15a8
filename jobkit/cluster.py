"""Connecting a job to Ray: the cluster it was submitted to, or a local one started in-process."""

from __future__ import annotations

import logging
import os

import ray

log = logging.getLogger(__name__)

WORKER_ENV = {"DS_BUILD_OPS": "0", "TOKENIZERS_PARALLELISM": "false"}
# Passed on to the processes Ray starts when the driver has them (HF_HUB_OFFLINE: the Makefile
# and tests run offline; a cluster that reaches the Hub leaves it unset).
PASSED_ENV = ("MIMIR_LOG_LEVEL", "HF_HUB_OFFLINE", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "TORCH_EXTENSIONS_DIR",
              "DS_ACCELERATOR")


def init_ray(local_cpus: int | None = None, object_store_mb: int = 512) -> None:
    """Attach to the cluster named by RAY_ADDRESS (as under `ray job submit`), else start a
    local Ray. Locally the logical CPUs are over-subscribed (at least 4): with 2, two Train
    workers take both and the Data stages never start (ENVIRONMENT.md)."""
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    env = {**WORKER_ENV, **{k: os.environ[k] for k in PASSED_ENV if k in os.environ}}
    if os.environ.get("RAY_ADDRESS"):
        ray.init(runtime_env={"env_vars": env}, log_to_driver=True)
        log.info("connected to Ray at %s", os.environ["RAY_ADDRESS"])
        return
    cpus = local_cpus or max(4, os.cpu_count() or 1)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=True,
             object_store_memory=object_store_mb * 2**20, runtime_env={"env_vars": env})
    ray.data.DataContext.get_current().enable_progress_bars = True
    log.info("started a local Ray with %d logical CPUs", cpus)
