"""The production rehearsal (`make rehearsal`): every job the way a cluster runs it.

A head and two worker nodes started with `ray start` on this machine, moto's S3 server as the
only storage for inputs, models, shards, checkpoints and reports, and every job sent with
`ray job submit --working-dir` from a copy of the repository, as README shows. In order:

1. corpus_refresh over 8 input files (7 on S3, one shipped file named by a relative path),
   with pools of 3 SaT and 3 SONAR actors: each actor takes batches, the busiest at most twice
   the idlest (the counts and busy seconds: in the report);
2. corpus_refresh again from a second copy of the repository with a source change (another
   Ray package folder), and a third submission racing it for the lock: nothing is processed
   again, the set is unchanged, the loser of the race (if any) names the lock;
3. corpus_refresh after a new input file: only it is processed, every document once;
4. fit_normalizer on the shards;
5. pretrain on shards, straight, and again with a worker node killed mid-run: the run
   resumes from its last checkpoint and its losses equal the straight run's (1e-6);
6. pretrain in run-time mode (SaT and SONAR actors feeding the Train workers): every trainable
   document trained once;
7. eval_pretrain on the S3 checkpoint, its report written to S3;
8. jobs.generate from the S3 checkpoint (prompts in German and French, Spanish out): the
   submitted job's answers equal the same command run outside the cluster.

Each step's outcome and wall time go to build/rehearsal/report.json.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.local_cluster import LocalCluster, MotoServer, wait_for

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
BUCKET = "mimir"
S3 = f"s3://{BUCKET}/rehearsal"
REPORT = ROOT / "build" / "rehearsal" / "report.json"
PY = sys.executable  # the project's Python, by absolute path (README's submit example)

pytestmark = pytest.mark.slow


def _copy_repository(dest: Path, change: str | None = None) -> Path:
    """The tracked files of the repository at `dest` (what a user's checkout holds), with
    `change` appended to jobs/__init__.py (a source edit: another Ray package folder)."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        if (ROOT / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)
    if change:
        with open(dest / "jobs" / "__init__.py", "a") as f:
            f.write(f"\n# {change}\n")
    return dest


class Rehearsal:
    """The cluster, the storage and the record of each step."""

    def __init__(self, tmp: Path) -> None:
        import boto3

        self.tmp = tmp
        self.logs = tmp / "logs"
        self.logs.mkdir()
        self.steps: list[dict] = []
        self.moto = MotoServer(self.logs / "moto.log")
        self.s3 = boto3.client("s3", endpoint_url=self.moto.url, region_name="us-east-1",
                               aws_access_key_id="rehearsal", aws_secret_access_key="rehearsal")
        self.s3.create_bucket(Bucket=BUCKET)
        env = {**self.moto.env, "RAY_AUTH_MODE": "disabled", "HF_HUB_OFFLINE": "1",
               "MIMIR_S3_RETRIES": "3"}
        # Logical CPUs enough for every pool of the refresh (2 readers, 3 SaT, 3 SONAR and
        # one of each other stage): a pool whose actors do not fit works with fewer.
        self.cluster = LocalCluster(env, self.logs, head_cpus=1,
                                    workers={"node_a": 6, "node_b": 6})
        self.cluster.start()
        self.wd = _copy_repository(tmp / "checkout-a")

    def put(self, key: str, data: bytes) -> None:
        self.s3.put_object(Bucket=BUCKET, Key=key, Body=data)

    def get(self, uri: str) -> bytes:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        return self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()

    def keys(self, prefix: str) -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        return sorted(o["Key"] for p in pages for o in p.get("Contents", []))

    def job(self, name: str, module: str, *overrides: str, wd: Path | None = None,
            expect_rc: int | None = 0) -> str:
        """Submit `python -m module overrides...`; the job's output. Logged with its time."""
        t0 = time.monotonic()
        done = self.cluster.submit(wd or self.wd, [PY, "-m", module, *overrides])
        seconds = time.monotonic() - t0
        (self.logs / f"{name}.log").write_text(done.stdout)
        self.record(name, seconds, rc=done.returncode)
        if expect_rc is not None:
            assert done.returncode == expect_rc, f"{name}: {done.stdout[-4000:]}"
        return done.stdout

    def record(self, name: str, seconds: float, **outcome) -> None:
        self.steps.append({"step": name, "seconds": round(seconds, 1), **outcome})

    def outcome(self, **outcome) -> None:
        self.steps[-1].update(outcome)

    def close(self) -> None:
        self.cluster.stop()
        self.moto.stop()


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory, tiny_assets):
    t0 = time.monotonic()
    r = Rehearsal(tmp_path_factory.mktemp("rehearsal"))
    try:
        r.record("start", time.monotonic() - t0, nodes=len(r.cluster.alive_nodes()))
        _upload_inputs_and_models(r, tiny_assets)
        yield r
    finally:
        r.close()
        REPORT.parent.mkdir(parents=True, exist_ok=True)
        REPORT.write_text(json.dumps({"seconds": round(time.monotonic() - t0, 1),
                                      "steps": r.steps}, indent=2))


def _table_bytes(table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _upload_inputs_and_models(r: Rehearsal, assets: Path) -> None:
    eng = pq.read_table(SAMPLES / "fineweb-edu" / "eng_Latn.parquet")
    fra = pq.read_table(SAMPLES / "fineweb-2" / "fra_Latn.parquet")
    for i in range(4):
        r.put(f"rehearsal/raw/eng_Latn/part-{i}.parquet", _table_bytes(eng.slice(3 * i, 3)))
    for i in range(2):  # part-2 comes later (a new dump)
        r.put(f"rehearsal/raw/fra_Latn/part-{i}.parquet", _table_bytes(fra.slice(2 * i, 2)))
    r.put("rehearsal/raw/hin_Deva/part-0.parquet",
          (SAMPLES / "fineweb-2" / "hin_Deva.parquet").read_bytes())
    for path in sorted(p for p in assets.rglob("*") if p.is_file()):
        r.put(f"rehearsal/models/{path.relative_to(assets).as_posix()}", path.read_bytes())


def _models() -> list[str]:
    return [f"segment.model={S3}/models/sat",
            f"sonar.encoder={S3}/models/sonar/sonar_text_encoder.pt",
            f"sonar.tokenizer={S3}/models/sonar/sentencepiece.model"]


INPUTS = ("inputs=[{uri: " + S3 + "/raw, config: eng_Latn}, {uri: " + S3 + "/raw, config: "
          "fra_Latn}, {uri: samples/fineweb-2/deu_Latn.parquet, config: deu_Latn}, {uri: " + S3 +
          "/raw, config: hin_Deva}]")


def _refresh(r: Rehearsal, name: str, wd: Path | None = None, expect_rc: int | None = 0):
    return r.job(name, "jobs.corpus_refresh", "--config", "configs/corpus_refresh.yaml", INPUTS,
                 f"output={S3}/shards", f"cache_dir={r.tmp}/cache", "inputs_per_commit=8",
                 "segment.actors=3", "segment.batch_size=2", "embed.actors=3",
                 "embed.batch_size=2", "block_mb=0.002", *_models(), wd=wd, expect_rc=expect_rc)


def _manifest(r: Rehearsal) -> dict:
    return json.loads(r.get(f"{S3}/shards/manifest.json"))


def _set_ids(r: Rehearsal) -> list[str]:
    manifest = _manifest(r)
    ids = []
    for f in manifest["files"]:
        if "/quarantine/" not in f["path"]:
            ids += pq.read_table(io.BytesIO(r.get(f"{S3}/shards/{f['path']}")),
                                 columns=["id"])["id"].to_pylist()
    return ids


def test_1_refresh_spreads_work_over_every_actor(rehearsal):
    r = rehearsal
    _refresh(r, "refresh_first")
    manifest = _manifest(r)
    inputs = manifest["meta"]["inputs"]
    assert len(inputs) == 8 and "samples/fineweb-2/deu_Latn.parquet" in inputs
    (group,) = manifest["meta"]["groups"]
    batches = group["batches_per_actor"]
    ids = _set_ids(r)
    r.outcome(documents=len(ids), input_files=len(inputs), batches_per_actor=batches,
              busy_seconds=group["busy_seconds"], group_seconds=group["seconds"])
    # 12 English documents (2 of them empty: quarantined), 4 French, 6 German, 5 Hindi.
    assert len(ids) == len(set(ids)) == 10 + 4 + 6 + 5
    # Every actor of the SaT and SONAR pools took a share, the busiest at most twice the idlest:
    # blocks of about two documents (block_mb) make 15 or so batches for each pool of 3.
    for stage in ("segment", "embed"):
        assert len(batches[stage]) == 3 and batches[stage][0] <= 2 * batches[stage][-1], \
            (stage, group["batches_per_actor"], group["busy_seconds"], group["seconds"])


def test_2_resubmitting_from_another_checkout_processes_nothing_again(rehearsal, tmp_path):
    r = rehearsal
    before = _manifest(r)
    other = _copy_repository(tmp_path / "checkout-b", change="a source change")
    racing = r.cluster.submit(r.wd, [PY, "-m", "jobs.corpus_refresh", "--config",
                                     "configs/corpus_refresh.yaml", INPUTS,
                                     f"output={S3}/shards", f"cache_dir={r.tmp}/cache",
                                     *_models()], wait=False)
    out = _refresh(r, "refresh_again", wd=other, expect_rc=None)
    raced = racing.communicate(timeout=900)[0]
    (r.logs / "refresh_racing.log").write_text(raced)
    outcomes = [(r.steps[-1]["rc"], out), (racing.returncode, raced)]
    for rc, text in outcomes:  # up to date, or refused by the other's lock
        assert (rc == 0 and "is up to date" in text) or (rc != 0 and "LeaseHeld" in text), text[-3000:]
    assert any(rc == 0 for rc, _ in outcomes)
    after = _manifest(r)
    assert after["files"] == before["files"] and after["meta"]["inputs"] == before["meta"]["inputs"]
    r.outcome(racing_rc=racing.returncode, documents=len(_set_ids(r)))


def test_3_a_new_input_file_alone_is_processed(rehearsal):
    r = rehearsal
    fra = pq.read_table(SAMPLES / "fineweb-2" / "fra_Latn.parquet")
    r.put("rehearsal/raw/fra_Latn/part-2.parquet", _table_bytes(fra.slice(4, 2)))
    _refresh(r, "refresh_new_file")
    manifest = _manifest(r)
    groups = manifest["meta"]["groups"]
    assert len(groups) == 2
    read = next(c for c in groups[1]["counts"] if c["stage"] == "read")
    assert read["rows_out"] == 2 and read["tally"] == {"fra_Latn": 2}
    ids = _set_ids(r)
    assert len(ids) == len(set(ids)) == 25 + 2
    r.outcome(documents=len(ids), new_documents=read["rows_out"])


def test_4_fit_normalizer(rehearsal):
    r = rehearsal
    r.job("fit_normalizer", "jobs.fit_normalizer", f"shards={S3}/shards",
          f"output={S3}/normalizer.safetensors")
    assert "rehearsal/normalizer.safetensors" in r.keys("rehearsal/normalizer")


def _pretrain(r: Rehearsal, run: str, wait: bool = True, **kw):
    overrides = ["--config", "configs/pretrain.yaml", f"run_name={run}",
                 f"storage_path={S3}/checkpoints", f"shards={S3}/shards",
                 f"normalizer={S3}/normalizer.safetensors", f"cache_dir={r.tmp}/cache",
                 "train.steps=60", "train.checkpoint_every=5", "train.log_every=5",
                 *(f"{k}={v}" for k, v in kw.items())]
    if wait:
        return r.job(f"pretrain_{run}", "jobs.pretrain", *overrides)
    return r.cluster.submit(r.wd, [PY, "-m", "jobs.pretrain", *overrides], wait=False)


def _printed_checkpoint(output: str) -> str:
    """The URI a training job prints last: `final checkpoint: URI`."""
    return next(line.split("final checkpoint: ")[1].strip() for line in output.splitlines()
                if "final checkpoint: " in line)


def _history(r: Rehearsal, output: str) -> list[dict]:
    uri = _printed_checkpoint(output)
    return [json.loads(x) for x in r.get(f"{uri}/train_log.jsonl").decode().splitlines()]


def test_5_pretrain_survives_a_lost_worker_node(rehearsal):
    r = rehearsal
    straight = _history(r, _pretrain(r, "straight"))
    t0 = time.monotonic()
    running = _pretrain(r, "node-lost", wait=False)
    wait_for("the first checkpoint", lambda: any(
        "/checkpoint_" in k for k in r.keys("rehearsal/checkpoints/node-lost/")), 600, 0.5)
    workers = r.cluster.actors("RayTrainWorker")
    nodes = {r.cluster.node_of(a["node_id"]) for a in workers} - {"head", None}
    assert nodes, workers
    lost = sorted(nodes)[0]
    r.cluster.stop_node(lost)
    out = running.communicate(timeout=900)[0]
    (r.logs / "pretrain_node-lost.log").write_text(out)
    r.record("pretrain_node_lost", time.monotonic() - t0, rc=running.returncode,
             stopped_node=lost)
    assert running.returncode == 0, out[-4000:]
    history = _history(r, out)
    assert [h["step"] for h in history] == list(range(1, 61))
    np.testing.assert_allclose([h["loss"] for h in history], [h["loss"] for h in straight],
                               atol=1e-6, rtol=0)
    assert "resumed at step" in out
    r.outcome(final_loss=history[-1]["loss"])
    r.cluster.restart_node(lost)  # the next steps need the node's CPUs


def test_6_pretrain_in_run_time_mode(rehearsal):
    r = rehearsal
    inputs = INPUTS.replace("inputs=", "runtime.inputs=")
    out = r.job("pretrain_runtime", "jobs.pretrain", "--config", "configs/pretrain_runtime.yaml",
                inputs, "run_name=runtime", f"storage_path={S3}/checkpoints",
                f"normalizer={S3}/normalizer.safetensors", f"cache_dir={r.tmp}/cache",
                "train.steps=200", "log_sequence_ids=true", *_models())
    uri = _printed_checkpoint(out)
    import torch

    consumed = []
    for rank in range(2):
        worker = torch.load(io.BytesIO(r.get(f"{uri}/worker_rank{rank}.pt")), weights_only=True)
        consumed += [i.split("#")[0] for i in worker["consumed_ids"]]
    documents = sorted(set(consumed))
    assert len(documents) == len(set(_set_ids(r)))  # the same documents the refresh kept
    r.outcome(documents=len(documents))


def _final_checkpoint(r: Rehearsal, run: str) -> str:
    """The newest checkpoint folder of a run (Ray Train names them by time)."""
    folders = {k.split("/")[3] for k in r.keys(f"rehearsal/checkpoints/{run}/checkpoint_")
               if k.split("/")[3] != "checkpoint_manager_snapshot.json"}
    return f"{S3}/checkpoints/{run}/{sorted(folders)[-1]}"


def test_7_eval_on_the_s3_checkpoint(rehearsal):
    r = rehearsal
    checkpoint = _final_checkpoint(r, "straight")
    r.job("eval_pretrain", "jobs.eval_pretrain", "--config", "configs/eval_pretrain.yaml",
          f"checkpoint={checkpoint}", f"normalizer={S3}/normalizer.safetensors",
          f"shards={S3}/shards", f"sonar.encoder={S3}/models/sonar/sonar_text_encoder.pt",
          f"sonar.decoder={S3}/models/sonar/sonar_text_decoder.pt",
          f"sonar.tokenizer={S3}/models/sonar/sentencepiece.model", "min_sentences=2",
          f"cache_dir={r.tmp}/cache", f"output={S3}/reports/eval_pretrain.json",
          f"report_dir={S3}/reports/eval_pretrain")
    report = json.loads(r.get(f"{S3}/reports/eval_pretrain.json"))
    assert report["documents"] > 0 and np.isfinite(report["l2"])
    r.outcome(documents=report["documents"], l2=report["l2"])


def test_8_generate_from_the_s3_checkpoint(rehearsal):
    r = rehearsal
    checkpoint = _final_checkpoint(r, "straight")
    prompts = [{"text": "Der Hund schläft im Garten. Die Sonne scheint.", "lang": "deu_Latn"},
               {"text": "Le chat dort sur le canapé.", "lang": "fra_Latn"}]
    (r.wd / "prompts.jsonl").write_text("".join(json.dumps(p) + "\n" for p in prompts))
    # The decoder is named: the pre-training job recorded its default (a path inside Ray's
    # copy of that submission's working dir, gone now); the corpus job uses no decoder.
    args = ["--checkpoint", checkpoint, "--input", "prompts.jsonl", "--target-lang", "spa_Latn",
            "--max-sentences", "2", f"cache_dir={r.tmp}/cache-generate",
            f"sonar_decoder={S3}/models/sonar/sonar_text_decoder.pt"]
    out = r.job("generate", "jobs.generate", *args)
    answers = [json.loads(line) for line in out.splitlines() if line.startswith('{"index"')]
    local = subprocess.run([PY, "-m", "jobs.generate", *args], cwd=r.wd, env=r.cluster.env,
                           capture_output=True, text=True, timeout=600)
    assert local.returncode == 0, local.stderr[-3000:]
    assert answers == [json.loads(line) for line in local.stdout.splitlines()]
    assert [a["lang"] for a in answers] == ["deu_Latn", "fra_Latn"]
    assert all(a["target_lang"] == "spa_Latn" and 1 <= len(a["sentences"]) <= 2
               for a in answers)
    r.outcome(prompts=len(answers), sentences=[len(a["sentences"]) for a in answers])
