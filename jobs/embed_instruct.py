"""Embed an instruction set (written by jobs.prepare_instruct) into training shards: every
instance's source and target sentences, plus "End of text.", with the number of context
embeddings, so instruction tuning trains on the targets only.

    python -m jobs.embed_instruct --config jobs/configs/embed_instruct.yaml
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from jobs import config as config_io
from jobs.cluster import init_ray
from jobs.stages import EmbedConfig, map_embed
from pipelines import shards, storage
from pipelines.counts import format_summary
from pipelines.instruct import InstanceSentences
from pipelines.ray_stages import CountsSink, collect_counts, map_stage

log = logging.getLogger("jobs.embed_instruct")


@dataclass
class EmbedInstructConfig:
    instructions: str = "build/demo/instruct"  # a committed instruction set
    output: str = "build/demo/instruct_shards"
    cache_dir: str = "build/cache"
    embed: EmbedConfig = field(default_factory=EmbedConfig)


def run(cfg: EmbedInstructConfig) -> shards.Manifest:
    import ray

    init_ray()
    for name in ("instructions", "output", "cache_dir"):
        setattr(cfg, name, config_io.absolute(getattr(cfg, name)))
    cfg.embed.absolute()
    source = shards.read_manifest(cfg.instructions)
    fs, _ = storage.resolve(cfg.instructions)
    ds = ray.data.read_parquet(shards.data_paths(cfg.instructions), filesystem=fs)

    sink = CountsSink.remote()
    run_id = shards.new_run_id()
    ds = map_stage(ds, InstanceSentences, sink, batch_size=256)
    ds = map_embed(ds, cfg.embed, sink, cfg.cache_dir)
    ds = map_stage(ds, shards.ShardWriter, sink, batch_size=256,
                   kwargs={"root": cfg.output, "run_id": run_id,
                           "columns": shards.INSTRUCT_SHARD_COLUMNS,
                           "quarantine_columns": ["id", "source", "lang", "quarantine"]})
    files = [shards.ShardFile(**row) for row in ds.take_all()]
    counts = collect_counts(sink)
    manifest = shards.commit(cfg.output, run_id, files, counts,
                             meta={**source.meta, "instructions": cfg.instructions})
    log.info("summary of %s:\n%s", run_id, format_summary(counts))
    return manifest


def main() -> None:
    args = config_io.cli(__doc__.splitlines()[0], "jobs/configs/embed_instruct.yaml")
    run(config_io.load(EmbedInstructConfig, args.config, args.overrides))


if __name__ == "__main__":
    # Through the importable module, not __main__, so that Ray pickles this module's
    # functions and classes by reference (as they are under `ray job submit`).
    from jobs.embed_instruct import main as _main

    _main()
