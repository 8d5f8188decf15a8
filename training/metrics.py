"""Where a training run's metrics go besides Ray Train's own reports: TensorBoard event files
under the run folder (by default), and MLflow or Weights & Biases when configured, through Ray's
integrations (ray.air.integrations.mlflow / .wandb, rank 0 only).

TensorBoard gets every step's loss, learning rate and gradient norm (so its curves are the
checkpoint's loss history, step for step) and the rates at each report; MLflow and W&B get the
reports. Event files of a run on S3 are written locally and uploaded whole at each checkpoint
and at the end (tensorboardX has no S3 writer that honours AWS_ENDPOINT_URL).
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import storage
from storage.stale import stale_name

log = logging.getLogger(__name__)

TENSORBOARD_TMP = "mimir-tb-"  # local event files of an s3:// run, uploaded as they grow

TENSORBOARD_DIR = "tensorboard"


@dataclass
class TrackingConfig:
    tensorboard: bool = True  # event files under <storage_path>/<run_name>/tensorboard
    mlflow_tracking_uri: str | None = None  # e.g. file:///data/mlruns or http://mlflow:5000
    mlflow_experiment: str = "mimir"  # created if it does not exist
    wandb_project: str | None = None  # W&B project (needs wandb installed and logged in)


class MetricsWriter:
    """Rank 0's writer of scalars; a no-op on the other ranks."""

    def __init__(self, cfg: TrackingConfig, run_uri: str, run_name: str, params: dict,
                 rank: int, resume_step: int = 0) -> None:
        self.active = rank == 0
        self.tb = self.mlflow = self.wandb = None
        self.upload_to: str | None = None
        if not self.active:
            return
        if cfg.tensorboard:
            from tensorboardX import SummaryWriter

            target = storage.join(run_uri, TENSORBOARD_DIR)
            if storage.is_remote(run_uri):
                self.upload_to, logdir = target, tempfile.mkdtemp(prefix=stale_name(TENSORBOARD_TMP))
            else:
                logdir = target
            # A resumed run drops what an interrupted attempt logged after its checkpoint.
            self.tb = SummaryWriter(logdir=logdir, flush_secs=30,
                                    purge_step=resume_step + 1 if resume_step else None)
        if cfg.mlflow_tracking_uri:
            from ray.air.integrations.mlflow import setup_mlflow

            if cfg.mlflow_tracking_uri.startswith("file:"):
                # MLflow 3 refuses its file store unless opted in; a file:// URI is that choice.
                os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")

            self.mlflow = setup_mlflow(params, tracking_uri=cfg.mlflow_tracking_uri,
                                       experiment_name=cfg.mlflow_experiment, run_name=run_name,
                                       create_experiment_if_not_exists=True)
        if cfg.wandb_project:
            from ray.air.integrations.wandb import setup_wandb

            self.wandb = setup_wandb(params, project=cfg.wandb_project, name=run_name)

    def step(self, step: int, values: dict[str, float]) -> None:
        """Per-step scalars (TensorBoard only)."""
        if self.tb is not None:
            for key, value in values.items():
                self.tb.add_scalar(f"train/{key}", value, step)

    def report(self, step: int, metrics: dict[str, float]) -> None:
        """A report's scalars, to every configured sink."""
        if self.tb is not None:
            for key, value in metrics.items():
                if key != "step":
                    self.tb.add_scalar(f"report/{key}", value, step)
        if self.mlflow is not None:
            self.mlflow.log_metrics({k: v for k, v in metrics.items() if k != "step"}, step=step)
        if self.wandb is not None:
            self.wandb.log(metrics, step=step)

    def flush(self) -> None:
        """Write buffered events (and upload them, for a run on S3)."""
        if self.tb is None:
            return
        self.tb.flush()
        if self.upload_to:
            fs, base = storage.resolve(self.upload_to)
            for path in Path(self.tb.logdir).iterdir():
                storage.write_bytes(fs, storage.join(base, path.name), path.read_bytes())

    def close(self) -> None:
        self.flush()
        if self.tb is not None:
            self.tb.close()
        if self.mlflow is not None:
            self.mlflow.end_run()
        if self.wandb is not None:
            self.wandb.finish()
