"""A production-shaped setup on this machine, for the rehearsal (tests/test_rehearsal.py): a
moto S3 server in a process of its own as the only shared storage, and a Ray cluster of
several nodes started with `ray start` (a head and worker nodes, each with its own temp dir and
a custom resource naming it), to which jobs go by `ray job submit --working-dir` as README
shows. Everything started here is stopped by the PID it was started with, nothing else."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

RAY = str(Path(sys.executable).parent / "ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what: str, ready, timeout_s: float, interval_s: float = 1.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout_s:.0f} s")
        time.sleep(interval_s)


def stop(process: subprocess.Popen, timeout_s: float = 60) -> None:
    """End a process this module started: SIGTERM, then SIGKILL if it lingers."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class MotoServer:
    """moto's S3 server on 127.0.0.1 in its own process; `env` points AWS clients at it."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = open(log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self._log, stderr=subprocess.STDOUT)
        wait_for("moto server", self._up, 60, 0.2)
        self.env = {"AWS_ENDPOINT_URL": self.url, "AWS_ACCESS_KEY_ID": "rehearsal",
                    "AWS_SECRET_ACCESS_KEY": "rehearsal", "AWS_DEFAULT_REGION": "us-east-1"}

    def _up(self) -> bool:
        try:
            urllib.request.urlopen(self.url, timeout=2).close()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        stop(self.process)
        self._log.close()


@dataclass
class Node:
    name: str  # also its custom resource, e.g. {"node_a": 1}
    cpus: int
    process: subprocess.Popen | None = None
    temp_dir: str = ""


@dataclass
class LocalCluster:
    """`ray start` nodes on 127.0.0.1: the head (`head_cpus`) and `workers` (name -> CPUs)."""

    env: dict[str, str]
    log_dir: Path
    head_cpus: int = 1
    workers: dict[str, int] = field(default_factory=dict)
    nodes: dict[str, Node] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.port, self.dashboard_port = free_port(), free_port()
        self.address = f"http://127.0.0.1:{self.dashboard_port}"
        base = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        self.env = {**base, **self.env}

    def start(self) -> None:
        self._start_node(Node("head", self.head_cpus), ["--head", f"--port={self.port}",
                                                       f"--dashboard-port={self.dashboard_port}",
                                                       "--dashboard-host=127.0.0.1"])
        wait_for("the job API", lambda: self._ray(["job", "list", "--address",
                                                   self.address]).returncode == 0, 120)
        for name, cpus in self.workers.items():
            self._start_node(Node(name, cpus), [f"--address=127.0.0.1:{self.port}"])
        wait_for(f"{1 + len(self.workers)} nodes",
                 lambda: len(self.alive_nodes()) == 1 + len(self.workers), 120)

    def _start_node(self, node: Node, args: list[str]) -> None:
        # Each node its own agent ports (several raylets share this host) and a short temp
        # dir (socket paths have a length limit).
        node.temp_dir = tempfile.mkdtemp(prefix=f"ray-{node.name}-", dir="/tmp")
        ports = ["--dashboard-agent-listen-port", "--dashboard-agent-grpc-port",
                 "--runtime-env-agent-port", "--metrics-export-port", "--node-manager-port",
                 "--object-manager-port"]
        node.process = subprocess.Popen(
            [RAY, "start", *args, f"--num-cpus={node.cpus}", "--node-ip-address=127.0.0.1",
             f"--resources={json.dumps({node.name: 1})}", f"--temp-dir={node.temp_dir}",
             "--disable-usage-stats", "--block", *(f"{p}={free_port()}" for p in ports)],
            env=self.env, stdout=open(self.log_dir / f"ray-{node.name}.log", "w"),
            stderr=subprocess.STDOUT)
        self.nodes[node.name] = node

    def _ray(self, args: list[str], timeout_s: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([RAY, *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout_s)

    def alive_nodes(self) -> list[dict]:
        out = self._ray(["list", "nodes", "--format", "json", "--address", self.address,
                         "--filter", "state=ALIVE"])
        return json.loads(out.stdout) if out.returncode == 0 else []

    def node_of(self, node_id: str) -> str | None:
        """Which of our nodes (its name) has this Ray node id."""
        for n in self.alive_nodes():
            if n["node_id"] == node_id:
                return next((k for k in n["resources_total"] if k in self.nodes), None)
        return None

    def actors(self, class_name: str) -> list[dict]:
        out = self._ray(["list", "actors", "--format", "json", "--address", self.address,
                         "--filter", f"class_name={class_name}", "--filter", "state=ALIVE"])
        return json.loads(out.stdout) if out.returncode == 0 else []

    def submit(self, working_dir: Path, entrypoint: list[str], wait: bool = True,
               timeout_s: float = 900) -> subprocess.CompletedProcess | subprocess.Popen:
        """`ray job submit --working-dir` as README shows; waits for the job (the completed
        process, output in stdout) unless `wait` is False (the running `ray job submit`)."""
        command = [RAY, "job", "submit", "--address", self.address, "--working-dir",
                   str(working_dir), "--", *entrypoint]
        if not wait:
            return subprocess.Popen(command, env=self.env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True)
        return subprocess.run(command, env=self.env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=timeout_s)

    def restart_node(self, name: str) -> None:
        """A replacement for a stopped worker node (as an autoscaler would start)."""
        self._start_node(Node(name, self.workers[name]), [f"--address=127.0.0.1:{self.port}"])
        wait_for(f"node {name} back", lambda: any(
            name in n["resources_total"] for n in self.alive_nodes()), 120)

    def stop_node(self, name: str) -> None:
        """A node lost at once (a crashed or preempted machine): its `ray start --block` and
        every process under it (raylet, workers) are killed together, by our PIDs. (A
        SIGTERM would drain the node gracefully, and its Train workers would finish first.)"""
        import psutil

        process = self.nodes[name].process
        tree = psutil.Process(process.pid)
        for p in [tree, *tree.children(recursive=True)]:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        process.wait()

    def stop(self) -> None:
        for name in [*self.workers, "head"]:
            node = self.nodes.get(name)
            if node and node.process:
                stop(node.process)
