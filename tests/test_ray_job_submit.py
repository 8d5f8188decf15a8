"""`ray job submit` of pre-training to a local head started with `ray start --head`, as the
README shows."""

import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.synthetic import write_synthetic_shards

ROOT = Path(__file__).resolve().parent.parent
RAY = str(Path(sys.executable).parent / "ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_submit_pretrain_to_a_local_head(tmp_path):
    shards_root = tmp_path / "shards"
    write_synthetic_shards(str(shards_root), 12, 16).save(tmp_path / "normalizer.safetensors")
    port, dashboard = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_AUTH_MODE"] = "disabled"
    head = subprocess.Popen(
        [RAY, "start", "--head", f"--port={port}", f"--dashboard-port={dashboard}",
         "--dashboard-host=127.0.0.1", "--num-cpus=4", "--disable-usage-stats", "--block",
         # The session's in-process Ray holds the agents' default ports: a second cluster on
         # the same machine needs its own, or its job agent never starts.
         f"--dashboard-agent-listen-port={_free_port()}",
         f"--dashboard-agent-grpc-port={_free_port()}",
         f"--runtime-env-agent-port={_free_port()}", f"--metrics-export-port={_free_port()}",
         f"--temp-dir={tempfile.mkdtemp(prefix='ray', dir='/tmp')}"],  # short: socket paths
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        address = f"http://127.0.0.1:{dashboard}"
        submit = [RAY, "job", "submit", "--address", address, "--working-dir", str(ROOT), "--",
                  sys.executable, "-m", "jobs.pretrain", "--config", "configs/pretrain.yaml",
                  f"shards={shards_root}", f"normalizer={tmp_path / 'normalizer.safetensors'}",
                  f"storage_path={tmp_path / 'checkpoints'}", f"cache_dir={tmp_path / 'cache'}",
                  "train.steps=4", "train.checkpoint_every=2", "train.max_sentences_per_sequence=8",
                  "train.max_embeddings_per_batch=64"]
        deadline = time.time() + 120
        while True:  # the dashboard takes a few seconds to accept jobs
            out = subprocess.run([RAY, "job", "list", "--address", address], env=env,
                                 capture_output=True, text=True)
            if out.returncode == 0 or time.time() > deadline:
                break
            time.sleep(2)
        while True:  # the job agent may start after the dashboard ("try again later")
            done = subprocess.run(submit, env=env, capture_output=True, text=True, timeout=600)
            output = done.stdout + done.stderr
            if "No available agent to submit job" not in output or time.time() > deadline:
                break
            time.sleep(2)
        assert done.returncode == 0, output[-3000:]
        match = re.search(r"final checkpoint: (\S+)", output)
        assert match, output[-3000:]
        checkpoint = Path(match.group(1))
        assert checkpoint.parent == tmp_path / "checkpoints" / "demo-pretrain"
        assert (checkpoint / "model.pt").exists() and (checkpoint / "files_rank1.json").exists()
    finally:
        head.terminate()
        head.wait(timeout=60)
