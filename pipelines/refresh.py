"""The corpus refresh (jobs.corpus_refresh): FineWeb-style documents -> validation -> Chinese
relabel -> SaT sentences -> SONAR embeddings -> committed embedding shards (plus a quarantine of
rejected rows with their reasons).

Incremental, for a nightly schedule: every configured input (file or folder, local or s3://)
is expanded into its Parquet files, and only files the shard manifest does not list yet are
processed, `inputs_per_commit` files per Ray Data pipeline. After each group the manifest is
committed with the group's shards and counts (`meta["inputs"]`: URI -> config, size, group;
`meta["groups"]`: run, shard paths, counts), so a run that dies (even killed with SIGKILL)
loses at most the group in progress; its orphan shards are never visible and are deleted by the
next commit. Running again resumes at that group's boundary, so its groups are those of an
uninterrupted run, and the pipeline keeps the input order (batches, hence the float rounding of
the embeddings, depend only on a group's files): the set ends bit for bit equal to an
uninterrupted run's. A lock object with a lease (storage/lease.py) refuses a second concurrent
run; a killed run's lease is taken over once it expires. Inputs dropped from the config stay in
the set.

The set records what decides its documents besides the files (`meta["reading"]`: size cap,
SaT model and settings, SONAR encoder and tokenizer, embedding dtype) and, per file, its config
and `limit`; a run with other settings refuses to extend it (ReadingMismatch), so a trial run
with `limit: 2` cannot pass for the whole file later.

A listed file whose size changed (published dumps should never change) is not reprocessed: its
earlier documents stay, it is logged and recorded in `meta["changed_inputs"]` (URI -> processed
size, size now, the run that first saw it), and the new files are still processed. Then, with
`changed_inputs: fail` (the default), the run ends with ChangedInputs naming the files (a
non-zero exit, so that an unattended schedule alerts someone); with `warn` it ends normally.

Ends with a summary of what every stage counted over the whole set; the same counts go into
the shard manifest.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from jobkit.cluster import init_ray
from jobkit.config import to_dict
from mimir_model.sonar.config import SonarFiles
from pipelines import shards
from pipelines.counts import StageCounts, format_summary
from pipelines.langs import sonar_code_for_config
from pipelines.ray_stages import (CountsSink, Progress, collect_batches, collect_counts,
                                  map_document_stages, map_stage, set_block_size,
                                  stage_seconds, wait_for_pools_if_they_fit)
from pipelines.readers.fineweb import FinewebInput, fineweb_files, read_spec
from pipelines.stage import StageSpec
from pipelines.stage_configs import EmbedConfig, SegmentConfig
from pipelines.validate import MAX_CHARS
from storage.lease import Lease
from storage.paths import Output, Scratch, absolute_paths, identity

log = logging.getLogger(__name__)


@dataclass
class CorpusConfig:
    inputs: list[FinewebInput] = field(default_factory=list)  # files or folders, one config each
    output: Output = "build/demo/shards"  # the shard set (local folder or s3:// prefix)
    cache_dir: Scratch = "build/cache"  # where remote models are downloaded
    # Longer documents are quarantined as too_long (bounds the memory of one row).
    max_document_chars: int = MAX_CHARS
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    sonar: SonarFiles = field(default_factory=SonarFiles)
    # New input files processed by one run (None: all); the rest wait for the next run.
    max_inputs_per_run: int | None = None
    # Input files per pipeline and commit: what a crash can lose, against the cost of starting
    # the stages' actors (seconds) for every group.
    inputs_per_commit: int = 8
    read_actors: int = 2  # input files read at once, each by a Ray actor
    # Largest block between the stages (Ray Data cuts what each stage returns to it), in MiB.
    # A pool's actors share the work block by block: the group's documents must make many
    # blocks for every SaT and SONAR actor to get a share (a FineWeb document is about 4 kB).
    block_mb: float = 1.0
    # Lease of the lock on `output`; renewed every third of it while the job runs.
    lock_lease_s: float = 600.0
    # An input file already in the set whose size changed is never reprocessed (its earlier
    # documents stay) but logged and recorded in meta["changed_inputs"]; new files are still
    # processed. fail: the run then ends with an error (an unattended schedule must alert
    # someone); warn: it ends normally.
    changed_inputs: Literal["fail", "warn"] = "fail"


CHANGED_INPUTS = ("fail", "warn")


class ChangedInputs(RuntimeError):
    """Input files already in the set changed since they were processed."""


class ReadingMismatch(ValueError):
    """The run would extend a set with documents read or embedded another way than its
    documents so far (a trial run's `limit`, another size cap, model or config)."""

    def __init__(self, output: str, differences: list[str]) -> None:
        super().__init__(
            f"{output} was built with other reading settings than this run's, so extending it "
            f"would mix two kinds of documents: {'; '.join(differences)}. Build the set anew "
            "into another output (or restore the settings it records in its manifest, "
            "meta['reading'] and meta['inputs']).")


def reading(cfg: CorpusConfig) -> dict:
    """The settings besides the input files that decide what a set's documents are: recorded
    in the manifest (meta["reading"]) and required of every run that extends the set."""
    return {"max_document_chars": cfg.max_document_chars,
            "segment_model": identity(cfg.segment.model),
            "segment_threshold": cfg.segment.threshold,
            "segment_max_chars": cfg.segment.max_chars,
            "sonar_encoder": identity(cfg.sonar.encoder),
            "sonar_tokenizer": identity(cfg.sonar.tokenizer), "embedding_dtype": cfg.embed.dtype}


def check_reading(cfg: CorpusConfig, manifest: shards.Manifest | None) -> None:
    """Refuse (ReadingMismatch) to extend a set recorded with other reading settings."""
    recorded = manifest.meta.get("reading") if manifest else None
    if recorded is None:  # a new set, or one from before settings were recorded
        return
    now = reading(cfg)
    differences = [f"{k} {recorded.get(k)!r} -> {v!r}" for k, v in now.items()
                   if recorded.get(k) != v]
    if differences:
        raise ReadingMismatch(cfg.output, differences)


@dataclass
class Pending:
    input: FinewebInput
    uri: str  # one Parquet file (or a Hub dataset id), where it is read
    key: str  # how the manifest names it (storage.paths.identity)
    size: int | None


def run(cfg: CorpusConfig) -> shards.Manifest:
    if not cfg.inputs:
        raise ValueError("the config names no inputs")
    for inp in cfg.inputs:  # fail on an unknown language before any work is done
        sonar_code_for_config(inp.config)
    if cfg.changed_inputs not in CHANGED_INPUTS:
        raise ValueError(f"changed_inputs must be one of {CHANGED_INPUTS}, "
                         f"not {cfg.changed_inputs!r}")
    absolute_paths(cfg)
    init_ray()
    with Lease(cfg.output, cfg.lock_lease_s):
        return refresh(cfg)


def committed(root: str) -> shards.Manifest | None:
    """The set to append to: None when there is none or it was not written incrementally (an
    older replace-mode set, which the first commit then replaces)."""
    try:
        manifest = shards.read_manifest(root)
    except FileNotFoundError:
        return None
    return manifest if "inputs" in manifest.meta else None


def pending(cfg: CorpusConfig, manifest: shards.Manifest | None,
            ) -> tuple[list[Pending], dict[str, dict]]:
    """(the input files to process, in order; the listed files whose size changed since they
    were processed: URI -> {"size": processed size, "now": size now})."""
    done = manifest.meta["inputs"] if manifest else {}
    todo, changed, mismatched = [], {}, []
    for inp in cfg.inputs:
        for uri, size in fineweb_files(inp.uri, inp.config):
            # Sets written before inputs were named by identity() hold absolute paths.
            key = next((k for k in (identity(uri), uri) if k in done), None)
            if key is None:
                todo.append(Pending(inp, uri, identity(uri), size))
                continue
            for field_ in ("config", "limit"):  # sets from before limits were recorded: config
                if field_ in done[key] and done[key][field_] != getattr(inp, field_):
                    mismatched.append(f"{key}: {field_} {done[key][field_]!r} -> "
                                      f"{getattr(inp, field_)!r}")
            if done[key]["size"] != size:  # its documents are in the set, maybe changed
                changed[key] = {"size": done[key]["size"], "now": size}
    if mismatched:
        raise ReadingMismatch(cfg.output, mismatched)
    if cfg.max_inputs_per_run is not None:
        todo = todo[:cfg.max_inputs_per_run]
    return todo, changed


def changed_record(recorded: dict[str, dict], changed: dict[str, dict],
                   run_id: str) -> dict[str, dict]:
    """meta["changed_inputs"] for the files changed now: a change already recorded (same size
    now) keeps the run that first saw it; a restored file drops out."""
    return {uri: recorded[uri] if recorded.get(uri, {}).get("now") == c["now"]
            else {**c, "seen": run_id} for uri, c in changed.items()}


def refresh(cfg: CorpusConfig) -> shards.Manifest:
    """Process the new input files a group at a time, committing after each group (the caller
    holds the lock); then fail on changed input files if `cfg.changed_inputs` says so."""
    manifest = committed(cfg.output)
    check_reading(cfg, manifest)
    todo, changed = pending(cfg, manifest)
    run_id = shards.new_run_id()
    recorded = manifest.meta.get("changed_inputs", {}) if manifest else {}
    record = changed_record(recorded, changed, run_id)
    for uri, c in record.items():
        log.warning("input %s changed since run %s processed it (size %s -> %s): not "
                    "reprocessed, its earlier documents stay in the set", uri, c["seen"],
                    c["size"], c["now"])
    # What made the set, for the runs that train on it (their checkpoints record the models).
    extra = {"models": {"sonar": asdict(cfg.sonar), "segment_model": cfg.segment.model},
             "reading": reading(cfg), "config": to_dict(cfg),
             **({"changed_inputs": record} if record else {})}
    if todo:
        manifest = process_groups(cfg, manifest, todo, run_id, extra)
    elif record != recorded:  # only the record changed: the set's files stay as they are
        meta = {"inputs": manifest.meta["inputs"], "groups": manifest.meta["groups"], **extra}
        manifest = shards.commit(cfg.output, manifest.run_id, [],
                                 total_counts(manifest.meta["groups"]), meta=meta,
                                 previous=manifest)
    else:
        log.info("no new input files: %s is up to date", cfg.output)
    if record and cfg.changed_inputs == "fail":
        listed = "; ".join(f"{uri} (size {c['size']} -> {c['now']})" for uri, c in record.items())
        raise ChangedInputs(
            f"{len(record)} input file(s) changed since they were processed: {listed}. Their "
            f"earlier documents stay in {cfg.output} and were not reprocessed (new input files "
            "were, and are committed). Published dumps are immutable: restore the file, or "
            "build the set anew into another output; changed_inputs=warn only logs this.")
    return manifest


def process_groups(cfg: CorpusConfig, manifest: shards.Manifest | None, todo: list[Pending],
                   run_id: str, extra: dict) -> shards.Manifest:
    """Process `todo` a group at a time, committing after each group with `extra` in the
    manifest meta."""
    log.info("%d new input files to process", len(todo))
    previous = manifest or shards.Manifest(run_id, None, [], meta={"inputs": {}, "groups": []})
    for start in range(0, len(todo), cfg.inputs_per_commit):
        group = todo[start:start + cfg.inputs_per_commit]
        files, counts, pools = process(cfg, group, run_id)
        inputs, groups = dict(previous.meta["inputs"]), list(previous.meta["groups"])
        for item in group:
            inputs[item.key] = {"config": item.input.config, "limit": item.input.limit,
                                "size": item.size, "group": len(groups)}
        groups.append({"run_id": run_id, "files": [f.path for f in files],
                       "counts": [c.as_dict() for c in counts], **pools})
        previous = shards.commit(cfg.output, run_id, files, total_counts(groups),
                                 meta={"inputs": inputs, "groups": groups, **extra},
                                 previous=previous)
        log.info("committed %d input files (%d of %d)", len(group), start + len(group), len(todo))
    this_run = total_counts([g for g in previous.meta["groups"] if g["run_id"] == run_id])
    written = next((c for c in this_run if c.stage == "write_shards"), StageCounts("write_shards"))
    set_documents = sum(f.rows for f in previous.data_files)
    log.info("this run (%s): %d input files, %d documents written, %d quarantined; the set "
             "now holds %d documents from %d input files\n%s", run_id, len(todo),
             written.rows_out, sum(written.quarantined.values()), set_documents,
             len(previous.meta["inputs"]), format_summary(this_run))
    return previous


def total_counts(groups: list[dict]) -> list[StageCounts]:
    """Every stage's counts summed over the set's commit groups, in stage order."""
    total: dict[str, StageCounts] = {}
    for group in groups:
        for d in group["counts"]:
            c = StageCounts.from_dict(d)
            if c.stage in total:
                total[c.stage].merge(c)
            else:
                total[c.stage] = c
    return list(total.values())


def process(cfg: CorpusConfig, group: list[Pending], run_id: str,
            ) -> tuple[list[shards.ShardFile], list[StageCounts], dict[str, Any]]:
    """A group of input files through every stage into shard files under `run_id` (not
    committed yet), with what each stage counted, and how its pools worked: the batches each
    actor took, each stage's busy seconds (all its actors), the group's seconds."""
    import ray

    sink = CountsSink.remote()
    # Each file is read by a Ray actor (the driver never holds the text), and its documents
    # leave the reader in blocks of at most block_mb, so every actor of the pools downstream
    # gets work.
    inputs = ray.data.from_items([{"uri": item.uri, "config": item.input.config,
                                   "limit": item.input.limit} for item in group])
    # Keep the input order through every stage, so that how rows are batched, hence the float
    # rounding of the SONAR batches, depends only on the group's files: a re-run after a crash
    # then embeds bit for bit as an uninterrupted run. Set on this dataset's own copy of the
    # DataContext, not the process-wide one that other pipelines of the driver share.
    inputs.context.execution_options.preserve_order = True
    readers = min(cfg.read_actors, len(group))
    wait_for_pools_if_they_fit(inputs, {"read": readers, "validate": 1, "chinese_relabel": 1,
                                        "segment": cfg.segment.actors,
                                        "embed": cfg.embed.actors, "write_shards": 1})
    set_block_size(inputs, cfg.block_mb)
    ds = map_stage(inputs, read_spec(readers), sink)
    ds = map_document_stages(ds, cfg.segment, cfg.embed, cfg.sonar, sink, cfg.cache_dir,
                             cfg.max_document_chars)
    ds = map_stage(ds, StageSpec(shards.ShardWriter, {"root": cfg.output, "run_id": run_id}),
                   sink)
    t0 = time.monotonic()
    with Progress(sink, f"refresh of {len(group)} input files"):
        files = [shards.ShardFile(**row) for row in ds.take_all()]
    seconds = time.monotonic() - t0
    counts, batches, busy = collect_counts(sink), collect_batches(sink), stage_seconds(sink)
    ray.kill(sink)
    # A pool busy for a small part of the group waited for its input, and Ray Data gives
    # each block to the actor that came free last: its batches gather on few actors.
    log.info("batches per actor (busiest first) and busy seconds of the group's %.0f s: %s",
             seconds, ", ".join(f"{stage} {'/'.join(map(str, n))} ({busy.get(stage, 0):.1f} s)"
                                for stage, n in batches.items()))
    return files, counts, {"batches_per_actor": batches, "seconds": round(seconds, 1),
                           "busy_seconds": {k: round(v, 2) for k, v in busy.items()}}
