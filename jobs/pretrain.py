"""Pre-training: embeddings -> Ray Train workers -> DeepSpeed -> checkpoints.

    python -m jobs.pretrain --config configs/pretrain.yaml [train.steps=40 ...]
    python -m jobs.pretrain --config configs/pretrain_runtime.yaml
    ray job submit --address http://HEAD:8265 --working-dir . -- python -m jobs.pretrain ...

The embeddings come from a committed shard set (`data: shards`, the embedding cache that
jobs.corpus_refresh writes; resume is exact) or are computed while training (`data: runtime`:
Ray Data reads raw documents, SaT segments and SONAR embeds them on actors, GPU actors at scale,
and streams them into the workers; resume is at least once, see
pipelines/streams/runtime_stream.py). Re-running with the same run_name and storage_path
resumes from the latest checkpoint. The job ends by printing the final checkpoint's URI.
"""

from jobkit.cli import parse
from training.config import PretrainJobConfig
from training.launch import run


def main() -> None:
    uri = run(parse(PretrainJobConfig, __doc__, "configs/pretrain.yaml"))
    print(f"final checkpoint: {uri}")


if __name__ == "__main__":
    main()
