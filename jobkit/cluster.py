"""Connecting a job to Ray: the cluster it was submitted to, or a local one started in-process."""

from __future__ import annotations

import logging
import os
import sys

import ray

log = logging.getLogger(__name__)

WORKER_ENV = {"DS_BUILD_OPS": "0", "TOKENIZERS_PARALLELISM": "false"}
# Passed on to the processes Ray starts when the driver has them: the job's log level (one
# level for the driver, Train workers, Data actors and tasks: jobkit.cli.setup_logging), the
# commit of the submitted code (provenance), HF_HUB_OFFLINE (the Makefile and tests run
# offline; a cluster that reaches the Hub leaves it unset), the S3 endpoint.
PASSED_ENV = ("MIMIR_LOG_LEVEL", "MIMIR_GIT_COMMIT", "HF_HUB_OFFLINE", "AWS_ENDPOINT_URL",
              "AWS_DEFAULT_REGION", "TORCH_EXTENSIONS_DIR", "DS_ACCELERATOR")


def init_ray(local_cpus: int | None = None, object_store_mb: int = 512) -> None:
    """Attach to the cluster named by RAY_ADDRESS (as under `ray job submit`), else start a
    local Ray. Locally the logical CPUs are over-subscribed (at least 4): with 2, two Train
    workers take both and the Data stages never start (ENVIRONMENT.md)."""
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    env = {**WORKER_ENV, **{k: os.environ[k] for k in PASSED_ENV if k in os.environ}}
    # Ray Data's progress bars on a terminal; elsewhere (under `ray job submit`, in a log file)
    # they would print a block of lines every 10 s: the jobs log one line per interval instead
    # (pipelines.ray_stages.Progress).
    ray.data.DataContext.get_current().enable_progress_bars = sys.stdout.isatty()
    if os.environ.get("RAY_ADDRESS"):
        ray.init(runtime_env={"env_vars": env}, log_to_driver=True)
        log.info("connected to Ray at %s", os.environ["RAY_ADDRESS"])
        return
    cpus = local_cpus or max(4, os.cpu_count() or 1)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    # The dashboard (metrics, Train runs, Data progress) on request: it costs seconds and memory.
    dashboard = os.environ.get("MIMIR_RAY_DASHBOARD") == "1"
    ray.init(address="local", num_cpus=cpus, include_dashboard=dashboard,
             dashboard_host="127.0.0.1", log_to_driver=True, object_store_memory=object_store_mb * 2**20,
             runtime_env={"env_vars": env})
    log.info("started a local Ray with %d logical CPUs%s", cpus,
             " and its dashboard at http://127.0.0.1:8265" if dashboard else "")
