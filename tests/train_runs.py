"""What the Ray Train tests share: reading a finished run's checkpoint, and running a job while
killing one of its training workers."""

import os
import signal
import threading
import time
from pathlib import Path
from typing import Callable


from storage.cache import fetch
from mimir_model.checkpoint import read_history, read_worker


def outcome(uri: str, cache: Path, world: int = 2) -> tuple[list[dict], list[list[str]]]:
    """(loss history, each rank's consumed sequence ids) of the checkpoint at `uri`."""
    local = fetch(uri, cache)
    return read_history(local), [read_worker(local, r)["consumed_ids"] for r in range(world)]


def train_worker_pids() -> list[int]:
    """PIDs of the live Ray Train workers of the cluster this process is connected to, from
    Ray's own actor table: a test kills only processes its cluster started, never another job's
    on the same machine. (The public ray.util.state API needs the dashboard, which the test
    cluster runs without; the GCS actor table is the same data.)"""
    from ray._private import state

    return sorted(a["Pid"] for a in state.actors(actor_state_name="ALIVE").values()
                  if a["ActorClassName"] == "RayTrainWorker" and a["Pid"])


def run_killing_a_worker(run: Callable[[], str], ready: Callable[[], bool],
                         poll_s: float = 0.5) -> str:
    """Starts `run` (a training job returning its final checkpoint URI) in a thread, kills one
    of its Ray Train worker processes once `ready()` holds, and returns what the job returned."""
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("uri", run()))
    thread.start()
    killed, deadline = None, time.time() + 300
    while killed is None and time.time() < deadline:
        if ready():
            pids = train_worker_pids()
            if pids:
                killed = pids[-1]
                os.kill(killed, signal.SIGKILL)
        time.sleep(poll_s)
    assert killed, "no checkpoint and training worker appeared in time"
    thread.join(timeout=600)
    return result["uri"]
