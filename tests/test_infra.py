"""Offline checks of the Kubernetes deployment under infra/ (no cluster, no Docker).

The KubeRay field names are those of the ray.io/v1 Go types and CRDs of ray-project/kuberay
(ray-operator/apis/ray/v1/{raycluster,rayjob,raycronjob,rayservice}_types.go, KubeRay 1.3 to
1.6); the RayJob rules mirror the operator's ValidateRayJobSpec (a TTL needs
shutdownAfterJobFinishes; clusterSelector needs the ray.io/cluster key and no backoffLimit).
"""

from __future__ import annotations

import copy
import functools
import importlib
import importlib.util
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from jobkit import config as config_io
from pipelines.refresh import CorpusConfig
from serving.config import ServeAppConfig
from storage.paths import absolute
from training.config import PretrainJobConfig

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"

RAY_KINDS = {"RayCluster", "RayJob", "RayCronJob", "RayService"}
RAYCLUSTER_SPEC_KEYS = {
    "suspend", "managedBy", "autoscalerOptions", "headServiceAnnotations",
    "enableInTreeAutoscaling", "gcsFaultToleranceOptions", "headGroupSpec", "rayVersion",
    "workerGroupSpecs", "authOptions", "upgradeStrategy"}
HEAD_GROUP_KEYS = {"template", "headService", "enableIngress", "rayStartParams", "serviceType"}
WORKER_GROUP_KEYS = {
    "suspend", "groupName", "replicas", "minReplicas", "maxReplicas", "idleTimeoutSeconds",
    "rayStartParams", "template", "scaleStrategy", "numOfHosts"}
AUTOSCALER_KEYS = {
    "version", "resources", "image", "imagePullPolicy", "securityContext", "idleTimeoutSeconds",
    "upscalingMode", "env", "envFrom", "volumeMounts"}
RAYJOB_SPEC_KEYS = {
    "activeDeadlineSeconds", "backoffLimit", "rayClusterSpec", "submitterPodTemplate",
    "metadata", "clusterSelector", "submitterConfig", "managedBy", "deletionPolicy",
    "deletionStrategy", "entrypoint", "runtimeEnvYAML", "jobId", "submissionMode",
    "entrypointResources", "entrypointNumCpus", "entrypointNumGpus", "ttlSecondsAfterFinished",
    "shutdownAfterJobFinishes", "suspend", "preRunningDeadlineSeconds"}
RAYCRONJOB_SPEC_KEYS = {"schedule", "jobTemplate", "suspend"}
RAYSERVICE_SPEC_KEYS = {
    "serveConfigV2", "rayClusterConfig", "upgradeStrategy", "serveService",
    "excludeHeadPodFromServeSvc", "rayClusterDeletionDelaySeconds",
    "serviceUnhealthySecondThreshold", "deploymentUnhealthySecondThreshold"}
UPGRADE_TYPES = {"NewCluster", "NewClusterWithIncrementalUpgrade", "None"}
SUBMISSION_MODES = {"K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"}
DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
CREDENTIAL_NAMES = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}


def yaml_files() -> list[Path]:
    return sorted(p for p in INFRA.rglob("*") if p.suffix in (".yaml", ".yml"))


@functools.cache
def documents() -> list[tuple[Path, dict]]:
    return [(p, d) for p in yaml_files() for d in yaml.safe_load_all(p.read_text())
            if d is not None]


def of_kind(kind: str) -> list[tuple[Path, dict]]:
    return [(p, d) for p, d in documents() if d.get("kind") == kind]


def cluster_specs(doc: dict) -> list[dict]:
    """The RayClusterSpecs inside a KubeRay document."""
    spec = doc.get("spec", {})
    if doc["kind"] == "RayCluster":
        return [spec]
    if doc["kind"] == "RayService":
        return [spec["rayClusterConfig"]] if "rayClusterConfig" in spec else []
    job = spec.get("jobTemplate", {}) if doc["kind"] == "RayCronJob" else spec
    return [job["rayClusterSpec"]] if "rayClusterSpec" in job else []


def pod_specs(cluster: dict) -> list[dict]:
    groups = [cluster["headGroupSpec"], *cluster.get("workerGroupSpecs", [])]
    return [g["template"]["spec"] for g in groups]


def kuberay_errors(doc: dict) -> list[str]:
    """What in a ray.io document KubeRay would reject or silently ignore."""
    errors = []
    if doc.get("apiVersion") != "ray.io/v1":
        errors.append(f"apiVersion {doc.get('apiVersion')!r} is not ray.io/v1")
    if doc.get("kind") not in RAY_KINDS:
        return errors + [f"kind {doc.get('kind')!r} is not one of {sorted(RAY_KINDS)}"]
    meta = doc.get("metadata", {})
    name = meta.get("name") or meta.get("generateName", "") + "x"
    if not DNS1035.match(name) or (doc["kind"] == "RayJob" and len(name) > 47):
        errors.append(f"name {name!r} is not a DNS-1035 label (RayJob: at most 47 chars)")
    spec = doc.get("spec", {})

    def unknown(where: str, keys, allowed: set[str]) -> None:
        if set(keys) - allowed:
            errors.append(f"{where}: unknown keys {sorted(set(keys) - allowed)}")

    jobs = []
    if doc["kind"] == "RayJob":
        jobs.append(spec)
    elif doc["kind"] == "RayService":
        unknown("spec", spec, RAYSERVICE_SPEC_KEYS)
        # A string (a YAML document), not a mapping: KubeRay rejects a structured one.
        if not isinstance(spec.get("serveConfigV2"), str):
            errors.append("RayService serveConfigV2 must be a YAML string")
        if "rayClusterConfig" not in spec:
            errors.append("RayService without rayClusterConfig")
        kind = spec.get("upgradeStrategy", {}).get("type", "NewCluster")
        if kind not in UPGRADE_TYPES:
            errors.append(f"upgradeStrategy type {kind!r} is not one of {sorted(UPGRADE_TYPES)}")
    elif doc["kind"] == "RayCronJob":
        unknown("spec", spec, RAYCRONJOB_SPEC_KEYS)
        if not spec.get("schedule"):
            errors.append("RayCronJob without schedule")
        jobs.append(spec.get("jobTemplate", {}))
    for job in jobs:
        unknown("RayJob spec", job, RAYJOB_SPEC_KEYS)
        if not str(job.get("entrypoint", "")).strip():
            errors.append("RayJob without entrypoint")
        if job.get("submissionMode", "K8sJobMode") not in SUBMISSION_MODES:
            errors.append(f"submissionMode {job['submissionMode']!r}")
        if ("rayClusterSpec" in job) == ("clusterSelector" in job):
            errors.append("a RayJob needs exactly one of rayClusterSpec and clusterSelector")
        if job.get("ttlSecondsAfterFinished", 0) > 0 and not job.get("shutdownAfterJobFinishes"):
            errors.append("ttlSecondsAfterFinished needs shutdownAfterJobFinishes: true")
        if "clusterSelector" in job:
            if not job["clusterSelector"].get("ray.io/cluster"):
                errors.append("clusterSelector needs the ray.io/cluster key")
            if job.get("backoffLimit", 0) > 0:
                errors.append("backoffLimit is incompatible with clusterSelector")
    for cluster in cluster_specs(doc):
        unknown("RayCluster spec", cluster, RAYCLUSTER_SPEC_KEYS)
        unknown("autoscalerOptions", cluster.get("autoscalerOptions", {}), AUTOSCALER_KEYS)
        head = cluster.get("headGroupSpec", {})
        unknown("headGroupSpec", head, HEAD_GROUP_KEYS)
        groups = [("headGroupSpec", head)]
        for i, group in enumerate(cluster.get("workerGroupSpecs", [])):
            where = f"workerGroupSpecs[{i}]"
            unknown(where, group, WORKER_GROUP_KEYS)
            for key in ("groupName", "minReplicas", "maxReplicas"):
                if key not in group:
                    errors.append(f"{where}: missing {key}")
            lo, hi = group.get("minReplicas", 0), group.get("maxReplicas", 0)
            if not lo <= group.get("replicas", lo) <= hi:
                errors.append(f"{where}: need minReplicas <= replicas <= maxReplicas")
            groups.append((where, group))
        for where, group in groups:
            for key in ("rayStartParams", "template"):
                if key not in group:
                    errors.append(f"{where}: missing {key}")
            params = group.get("rayStartParams") or {}
            if not all(isinstance(v, str) for v in params.values()):
                errors.append(f"{where}: rayStartParams values must be strings: {params}")
    return errors


def quantity(text: str | int) -> float:
    """A Kubernetes quantity ("64Gi", "500m", "8") as a number."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "m": 1e-3, "k": 1e3,
             "M": 1e6, "G": 1e9}
    number, unit = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(text)).groups()
    return float(number) * units.get(unit, 1)


def python_commands() -> list[tuple[str, str]]:
    """(where, command) for every RayJob entrypoint and every non-Ray container command that
    runs Python."""
    commands = []
    for path, doc in documents():
        where = f"{path.relative_to(ROOT)} {doc['kind']}"
        if doc["kind"] == "RayJob":
            commands.append((where, doc["spec"]["entrypoint"]))
        elif doc["kind"] == "RayCronJob":
            commands.append((where, doc["spec"]["jobTemplate"]["entrypoint"]))
        elif doc["kind"] in ("CronJob", "Job", "Pod"):
            for container in containers_of(doc):
                line = " ".join(container.get("command", []) + container.get("args", []))
                if "python" in line:
                    commands.append((where, line))
    return commands


def containers_of(doc: dict) -> list[dict]:
    spec = doc["spec"]
    if doc["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]["template"]["spec"]
    elif doc["kind"] == "Job":
        spec = spec["template"]["spec"]
    return spec.get("containers", [])


def parse_job_command(command: str) -> tuple[str, str | None, list[str]]:
    """`python -m MODULE [--config FILE] [KEY=VALUE ...]` -> (MODULE, FILE, overrides)."""
    words = shlex.split(command)
    starts = [i for i, w in enumerate(words[:-2])
              if re.fullmatch(r"python3?(\.\d+)?", w) and words[i + 1] == "-m"]
    if len(starts) != 1:
        raise ValueError(f"not one `python -m MODULE` in {command!r}")
    module, rest = words[starts[0] + 2], words[starts[0] + 3:]
    config = rest[rest.index("--config") + 1] if "--config" in rest else None
    overrides = [w for w in rest if "=" in w and not w.startswith("-")]
    return module, config, overrides


SECRET_PATTERNS = [
    re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    # a credential name given a literal value (not $VAR, <placeholder> or {ref})
    re.compile(r"(?i)\baws_(?:secret_access_key|access_key_id|session_token)[\"']?[ \t]*[:=]"
               r"[ \t]*[\"']?(?![$<{\"'\s])\S+"),
]


def literal_secrets(text: str) -> list[str]:
    return [m.group(0) for pattern in SECRET_PATTERNS for m in pattern.finditer(text)]


# --- every file parses ----------------------------------------------------------------------

def test_every_yaml_under_infra_parses_into_kubernetes_objects():
    files = yaml_files()
    assert {f.relative_to(INFRA).as_posix() for f in files} >= {
        "kuberay/raycluster.yaml", "kuberay/rayjob-pretrain.yaml", "kuberay/rayjob-eval.yaml",
        "kuberay/corpus-refresh/rayjob.yaml", "kuberay/corpus-refresh/cronjob.yaml",
        "kuberay/rayservice.yaml"}
    for path in files:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        assert docs, path
        for doc in docs:
            assert isinstance(doc, dict) and doc.get("apiVersion") and doc.get("kind"), path


# --- KubeRay manifests ----------------------------------------------------------------------

def test_kuberay_manifests_use_kuberay_fields():
    ray_docs = [(p, d) for p, d in documents() if "ray.io" in d["apiVersion"]]
    kinds = sorted(d["kind"] for _, d in ray_docs)
    assert kinds == ["RayCluster", "RayJob", "RayJob", "RayJob", "RayService"]
    for path, doc in ray_docs:
        assert kuberay_errors(doc) == [], path


def test_kuberay_checker_rejects_what_kuberay_rejects():
    _, cluster = of_kind("RayCluster")[0]
    bad = copy.deepcopy(cluster)
    bad["spec"]["workerGroups"] = bad["spec"].pop("workerGroupSpecs")
    assert kuberay_errors(bad) == ["RayCluster spec: unknown keys ['workerGroups']"]
    bad = copy.deepcopy(cluster)
    group = bad["spec"]["workerGroupSpecs"][0]
    group["replicas"], group["rayStartParams"]["num-gpus"] = 9, 8
    assert kuberay_errors(bad) == [
        "workerGroupSpecs[0]: need minReplicas <= replicas <= maxReplicas",
        "workerGroupSpecs[0]: rayStartParams values must be strings: "
        "{'object-store-memory': '60000000000', 'num-gpus': 8}"]
    job = next(d for _, d in of_kind("RayJob") if "clusterSelector" in d["spec"])
    bad = copy.deepcopy(job)
    bad["spec"]["ttlSecondsAfterFinished"], bad["spec"]["backoffLimit"] = 60, 1
    assert kuberay_errors(bad) == [
        "ttlSecondsAfterFinished needs shutdownAfterJobFinishes: true",
        "backoffLimit is incompatible with clusterSelector"]
    bad = {"apiVersion": "ray.io/v1", "kind": "RayCronJob", "metadata": {"name": "nightly"},
           "spec": {"schedule": "0 2 * * *", "concurrencyPolicy": "Forbid",
                    "jobTemplate": {"entrypoint": "python -m jobs.demo"}}}
    assert kuberay_errors(bad) == [
        "spec: unknown keys ['concurrencyPolicy']",
        "a RayJob needs exactly one of rayClusterSpec and clusterSelector"]


def test_clusters_run_the_project_image_with_gpu_workers():
    dockerfile = (INFRA / "docker" / "Dockerfile").read_text()
    ray_version = re.search(r"^ARG RAY_VERSION=(\S+)$", dockerfile, re.M).group(1)
    assert re.search(r"^FROM rayproject/ray:\$\{RAY_VERSION\}-py311-gpu$", dockerfile, re.M)
    images = set()
    clusters = [c for _, d in documents() if d["kind"] in RAY_KINDS for c in cluster_specs(d)]
    assert len(clusters) == 4  # the long-lived cluster, pre-training, the refresh, serving
    for cluster in clusters:
        assert cluster["rayVersion"] == ray_version
        head, *workers = pod_specs(cluster)
        assert "nvidia.com/gpu" not in head["containers"][0]["resources"]["limits"]
        assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
        assert workers, "no worker group"
        for pod in workers:
            res = pod["containers"][0]["resources"]
            assert quantity(res["limits"]["nvidia.com/gpu"]) == 8
            assert res["requests"]["nvidia.com/gpu"] == res["limits"]["nvidia.com/gpu"]
        groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
        for group, pod in zip(groups, pod_specs(cluster)):
            images.add(pod["containers"][0]["image"])
            assert pod["serviceAccountName"] == "mimir-ray"
            # Ray's object store lives in /dev/shm: it must fit under the volume's size limit.
            shm = next(v for v in pod["volumes"] if v["name"] == "dshm")["emptyDir"]
            assert quantity(group["rayStartParams"]["object-store-memory"]) < quantity(
                shm["sizeLimit"])
            # As infra/README says: models come from S3 or https, never the Hub.
            env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
            assert env["HF_HUB_OFFLINE"] == "1"
    assert len(images) == 1, images
    # The nightly pod only runs kubectl: a small image, not the GPU one.
    (cron_image,) = {c["image"] for _, d in of_kind("CronJob") for c in containers_of(d)}
    assert cron_image not in images and "kubectl" in cron_image
    assert "mimir-ray" in {d["metadata"]["name"] for _, d in of_kind("ServiceAccount")}


def test_rayjobs_pretrain_eval_and_refresh():
    jobs = {d["metadata"].get("name") or d["metadata"]["generateName"]: d["spec"]
            for _, d in of_kind("RayJob")}
    assert set(jobs) == {"mimir-pretrain-1-6b", "mimir-eval-pretrain", "corpus-refresh-"}
    pretrain = jobs["mimir-pretrain-1-6b"]
    assert pretrain["entrypoint"] == (
        "python -m jobs.pretrain --config configs/pretrain_1.6B.yaml")
    assert pretrain["shutdownAfterJobFinishes"] is True and pretrain["ttlSecondsAfterFinished"] > 0
    # The recipe's 32 GPU workers x 8 CPUs must fit the cluster the RayJob brings.
    recipe = config_io.load(PretrainJobConfig, ROOT / "configs/pretrain_1.6B.yaml")
    (group,) = pretrain["rayClusterSpec"]["workerGroupSpecs"]
    limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert group["minReplicas"] * quantity(limits["nvidia.com/gpu"]) == recipe.num_workers
    per_node = recipe.num_workers / group["minReplicas"]
    assert per_node * recipe.cpus_per_worker <= quantity(limits["cpu"])
    (_, cluster), = of_kind("RayCluster")
    assert jobs["mimir-eval-pretrain"]["clusterSelector"] == {
        "ray.io/cluster": cluster["metadata"]["name"]}
    assert parse_job_command(jobs["mimir-eval-pretrain"]["entrypoint"])[0] == "jobs.eval_pretrain"
    refresh = jobs["corpus-refresh-"]
    assert parse_job_command(refresh["entrypoint"])[:2] == (
        "jobs.corpus_refresh", "configs/corpus_refresh_nightly.yaml")
    assert refresh["shutdownAfterJobFinishes"] is True and refresh["backoffLimit"] == 0
    for spec in jobs.values():
        assert spec["submissionMode"] == "K8sJobMode"


def test_rayservice_serves_the_cluster_serve_config():
    (_, service), = of_kind("RayService")
    spec = service["spec"]
    serve_config = yaml.safe_load(spec["serveConfigV2"])
    # The manifest carries configs/serve/cluster.yaml, the file people run and edit.
    assert serve_config == yaml.safe_load((ROOT / "configs/serve/cluster.yaml").read_text())
    (app,) = serve_config["applications"]
    module, _, name = app["import_path"].partition(":")
    assert (module, name) == ("serving.app", "build_app")
    assert callable(getattr(importlib.import_module(module), name))
    cfg = config_io.from_dict(ServeAppConfig, app["args"])  # unknown or mistyped keys raise
    assert cfg.device == "cuda"
    recipe = config_io.load(PretrainJobConfig, ROOT / "configs/pretrain_1.6B.yaml")
    assert cfg.model == f"{recipe.storage_path}/{recipe.run_name}"  # the recipe's run folder
    (deployment,) = app["deployments"]
    assert deployment["name"] == "Mimir"  # serving/app.py's deployment
    scaling, actor = deployment["autoscaling_config"], deployment["ray_actor_options"]
    assert 1 <= scaling["min_replicas"] <= scaling["max_replicas"]
    # Every replica the autoscaler may start fits the GPU worker group at its largest.
    cluster = spec["rayClusterConfig"]
    (group,) = cluster["workerGroupSpecs"]
    limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert 0 < actor["num_gpus"] < 1
    assert scaling["max_replicas"] * actor["num_gpus"] <= (
        group["maxReplicas"] * quantity(limits["nvidia.com/gpu"]))
    assert scaling["max_replicas"] * actor["num_cpus"] <= (
        group["maxReplicas"] * quantity(limits["cpu"]))
    assert group["minReplicas"] >= 1 and cluster["enableInTreeAutoscaling"] is True
    assert serve_config["http_options"] == {"host": "0.0.0.0", "port": 8000}
    head = pod_specs(cluster)[0]["containers"][0]
    assert {"containerPort": 8000, "name": "serve"} in head["ports"]
    assert cluster["headGroupSpec"]["rayStartParams"]["dashboard-host"] == "0.0.0.0"
    bad = copy.deepcopy(service)
    bad["spec"]["serveConfigV2"] = serve_config
    bad["spec"]["upgradeStrategy"]["type"] = "BlueGreen"
    assert kuberay_errors(bad) == [
        "RayService serveConfigV2 must be a YAML string",
        "upgradeStrategy type 'BlueGreen' is not one of "
        "['NewCluster', 'NewClusterWithIncrementalUpgrade', 'None']"]


def test_serve_configs_are_serve_app_configs():
    from ray.serve.schema import ServeDeploySchema

    for path in sorted((ROOT / "configs/serve").glob("*.yaml")):
        config = yaml.safe_load(path.read_text())
        ServeDeploySchema.model_validate(config)  # what `serve run` / `serve deploy` check
        (app,) = config["applications"]
        cfg = config_io.from_dict(ServeAppConfig, app["args"])
        assert cfg.max_texts_per_request <= cfg.max_batch_size, path
        assert app["import_path"] == "serving.app:build_app", path


# --- entry points ---------------------------------------------------------------------------

def test_entrypoints_name_real_job_modules_and_configs():
    commands = python_commands()
    assert len(commands) == 3
    for where, command in commands:
        module, config, _ = parse_job_command(command)
        assert module.startswith("jobs."), where
        assert importlib.util.find_spec(module) is not None, (where, module)
        if config is not None:
            assert (ROOT / config).is_file(), (where, config)
            assert Path(config).parent.as_posix() == "configs", (where, config)


def test_entrypoint_overrides_are_keys_of_the_job_config():
    """Every KEY=VALUE applies to the job's config dataclass (unknown keys raise)."""
    checked = 0
    for where, command in python_commands():
        module, config, overrides = parse_job_command(command)
        source = importlib.util.find_spec(module).origin
        (cls_name,) = set(re.findall(r"\bparse\((\w+),", Path(source).read_text()))
        cls = getattr(importlib.import_module(module), cls_name)
        cfg = config_io.load(cls, ROOT / config, overrides)
        checked += len(overrides)
        for override in overrides:
            key, _, value = override.partition("=")
            node = cfg
            for part in key.split("."):
                node = getattr(node, part)
            if key == "inputs":
                assert len(node) == len(yaml.safe_load(value)) > 0, where
            else:  # a local path (a placeholder here) is made absolute when the job loads
                assert node in (yaml.safe_load(value), absolute(value)), (where, key)
    # Production settings live in config files, not in manifests: only the checkpoint that the
    # evaluation RayJob is given.
    assert checked == 1
    nightly = config_io.load(CorpusConfig, ROOT / "configs/corpus_refresh_nightly.yaml")
    assert nightly.output == "s3://mimir/shards/nightly" and len(nightly.inputs) == 7
    assert all(i.uri.startswith("s3://mimir/raw/") for i in nightly.inputs)
    assert nightly.sonar.encoder == "https://dl.fbaipublicfiles.com/SONAR/sonar_text_encoder.pt"
    assert (nightly.segment.model, nightly.segment.device) == ("s3://mimir/models/sat-3l", "cuda")


def test_command_parser_finds_module_config_and_overrides():
    command = ("python -m jobs.corpus_refresh --config configs/corpus_refresh.yaml "
               "inputs='[{uri: s3://b/x/, config: eng_Latn}]' output=s3://b/shards")
    assert parse_job_command(command) == (
        "jobs.corpus_refresh", "configs/corpus_refresh.yaml",
        ["inputs=[{uri: s3://b/x/, config: eng_Latn}]", "output=s3://b/shards"])
    with pytest.raises(ValueError):
        parse_job_command("ray job submit -- echo hi")


# --- the nightly refresh --------------------------------------------------------------------

def nightly() -> tuple[dict, dict, str]:
    kustomization = yaml.safe_load((INFRA / "kuberay/corpus-refresh/kustomization.yaml")
                                   .read_text())
    (_, cron), = of_kind("CronJob")
    script = containers_of(cron)[0]["args"][0]
    return kustomization, cron, script


def test_nightly_cronjob_creates_the_refresh_rayjob_without_overlap():
    kustomization, cron, script = nightly()
    spec = cron["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["schedule"] == "0 2 * * *"
    job = spec["jobTemplate"]["spec"]
    pod = job["template"]["spec"]
    assert job["backoffLimit"] == 0 and pod["restartPolicy"] == "Never"
    # A stuck pod ends before the next night (Forbid would skip it): after the RayJob's own
    # deadline, well within a day.
    (_, rayjob), = [(p, d) for p, d in of_kind("RayJob") if "corpus-refresh" in str(p)]
    assert rayjob["spec"]["activeDeadlineSeconds"] < job["activeDeadlineSeconds"] < 86400
    assert kustomization["resources"] == ["cronjob.yaml"]
    # The pod mounts the generated ConfigMap and creates the RayJob from the file in it.
    (generator,) = kustomization["configMapGenerator"]
    (file_key,) = generator["files"]
    (volume,) = pod["volumes"]
    assert volume["configMap"]["name"] == generator["name"]
    (mount,) = containers_of(cron)[0]["volumeMounts"]
    assert mount["name"] == volume["name"]
    assert f"kubectl create -f {mount['mountPath']}/{file_key} -o name" in script
    created = yaml.safe_load((INFRA / "kuberay/corpus-refresh" / file_key).read_text())
    assert created["kind"] == "RayJob" and "generateName" in created["metadata"]
    # Its ServiceAccount may create and read RayJobs, and nothing else.
    (_, binding), = of_kind("RoleBinding")
    (_, role), = of_kind("Role")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": pod["serviceAccountName"],
                                    "namespace": cron["metadata"]["namespace"]}]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert role["rules"] == [{"apiGroups": ["ray.io"], "resources": ["rayjobs"],
                              "verbs": ["create", "get"]}]


def _run_nightly(tmp_path, polls: str, final: str = "SUCCEEDED"):
    """The CronJob's script against a fake kubectl whose status polls answer, in turn, the
    lines of `polls` ("Running", "Complete", "fail": exit 1, "gone": NotFound); then the Ray
    job's status `final`. Returns (result, kubectl calls)."""
    _, _, script = nightly()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "answers").write_text(polls.replace(" ", "\n") + "\n")
    (bin_dir / "sleep").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "kubectl").write_text(f"""#!/bin/bash
echo "$*" >> {tmp_path}/calls
case "$*" in
  create*) echo rayjob.ray.io/corpus-refresh-x7k2p ;;
  *jobDeploymentStatus*) echo x >> {tmp_path}/polls
    answer=$(sed -n "$(wc -l < {tmp_path}/polls)p" {tmp_path}/answers)
    case "$answer" in
      fail) echo "Unable to connect to the server" >&2; exit 1 ;;
      gone) echo 'Error from server (NotFound): rayjobs.ray.io "x" not found' >&2; exit 1 ;;
      *) echo "$answer" ;;
    esac ;;
  *jobStatus*) echo {final} ;;
  *) exit 2 ;;
esac
""")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    result = subprocess.run(["bash", "-c", script.replace("/tmp/err", str(tmp_path / "err"))],
                            capture_output=True, text=True, timeout=30,
                            env={"PATH": f"{bin_dir}:/usr/bin:/bin"})
    return result, (tmp_path / "calls").read_text().splitlines()


POLL = "get rayjob.ray.io/corpus-refresh-x7k2p -o jsonpath={.status.jobDeploymentStatus}"


@pytest.mark.parametrize("final, rc", [("SUCCEEDED", 0), ("FAILED", 1)])
def test_nightly_pod_waits_for_the_rayjob_and_reports_its_outcome(tmp_path, final, rc):
    """The RayJob is Running, kubectl fails twice (an API server blip), then Complete: the
    pod polls until then and exits with the Ray job's outcome."""
    result, calls = _run_nightly(tmp_path, "Running fail fail Running Complete", final)
    assert result.returncode == rc, result.stderr
    assert calls == ["create -f /etc/mimir/rayjob.yaml -o name", *[POLL] * 5,
                     "get rayjob.ray.io/corpus-refresh-x7k2p -o jsonpath={.status.jobStatus}"]
    assert f"deployment Complete, Ray job {final}" in result.stdout


@pytest.mark.parametrize("polls, polled, message", [
    ("Running gone", 2, "rayjob.ray.io/corpus-refresh-x7k2p was deleted before it finished"),
    ("Running " + "fail " * 9 + "Running " + "fail " * 10, 21,
     "kubectl get rayjob.ray.io/corpus-refresh-x7k2p failed 10 times in a row: Unable to "
     "connect to the server"),
])
def test_nightly_pod_fails_when_the_rayjob_is_gone_or_kubectl_keeps_failing(tmp_path, polls,
                                                                            polled, message):
    result, calls = _run_nightly(tmp_path, polls.strip())
    assert result.returncode == 1 and message in result.stderr, result.stderr
    assert calls == ["create -f /etc/mimir/rayjob.yaml -o name", *[POLL] * polled]


# --- credentials ----------------------------------------------------------------------------

def test_no_literal_credentials_in_infra():
    for path in INFRA.rglob("*"):
        if path.is_file():
            assert literal_secrets(path.read_text()) == [], path
    assert of_kind("Secret") == []
    envs = [e for _, d in documents() if d["kind"] in RAY_KINDS for c in cluster_specs(d)
            for pod in pod_specs(c) for e in pod["containers"][0]["env"]]
    assert {e["name"] for e in envs} >= CREDENTIAL_NAMES - {"AWS_SESSION_TOKEN"}
    for env in envs:
        if env["name"] in CREDENTIAL_NAMES:
            assert "value" not in env
            assert env["valueFrom"]["secretKeyRef"]["name"] == "mimir-s3"


def test_secret_scanner_flags_literal_keys_only():
    key_id = "AKIA" + "IOSFODNN7EXAMPLE"
    secret = "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCYEXAMPLEKEY"
    assert literal_secrets(f"id: {key_id}") == [key_id]
    assert literal_secrets(f"aws_secret_access_key: {secret}") == [
        f"aws_secret_access_key: {secret}"]
    assert literal_secrets(f"--from-literal=AWS_SECRET_ACCESS_KEY={secret}") == [
        f"AWS_SECRET_ACCESS_KEY={secret}"]
    assert literal_secrets('--from-literal=AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY"') == []
    assert literal_secrets("- name: AWS_SECRET_ACCESS_KEY\n  valueFrom:") == []
