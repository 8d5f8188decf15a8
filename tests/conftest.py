"""Shared fixtures: tiny assets built once per session, a local Ray, a moto S3 server."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"


@pytest.fixture(scope="session")
def tiny_assets(tmp_path_factory) -> Path:
    """The tiny SONAR and SaT assets, built by the same command users run."""
    from offline_assets.tiny import build_tiny
    return build_tiny(tmp_path_factory.mktemp("assets") / "tiny")


@pytest.fixture(scope="session")
def cpu_shape_assets(tmp_path_factory) -> Path:
    """The full-shape assets at shape "cpu" (the real tokenizers and vocabularies, tiny
    widths), built by the same command users run."""
    from jobs.assets import main as assets_main
    return assets_main(["full-shape", "--shape", "cpu",
                        "--out", str(tmp_path_factory.mktemp("assets") / "cpu")])


@pytest.fixture(scope="session")
def tiny_lcm(tiny_assets, tmp_path_factory) -> Path:
    """A tiny untrained Two-Tower checkpoint whose run_info names the tiny assets."""
    from offline_assets.lcm import build_tiny_checkpoint
    return build_tiny_checkpoint(tmp_path_factory.mktemp("lcm") / "checkpoint", tiny_assets)


@pytest.fixture(scope="session")
def tiny_lcm_instruct(tiny_assets, tmp_path_factory) -> Path:
    """The same, recorded as instruction-tuned (prompts get the turn framing)."""
    from offline_assets.lcm import build_tiny_checkpoint
    return build_tiny_checkpoint(tmp_path_factory.mktemp("lcm_instruct") / "checkpoint",
                                 tiny_assets, instruction_tuned=True)


@pytest.fixture(scope="session")
def ray_local(s3_server):
    """One local Ray for the whole session (starting one costs seconds). Started after the S3
    server so its workers inherit the endpoint and credentials, as on a real node."""
    import ray
    from jobkit.cluster import init_ray
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(ROOT / "build" / "torch_extensions"))
    init_ray(local_cpus=4)
    yield ray
    ray.shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 endpoint (moto's server) on 127.0.0.1, with a bucket `mimir`."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "test",
           "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="mimir")
    yield endpoint
    server.stop()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
