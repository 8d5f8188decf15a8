"""Embed an instruction set (written by jobs.prepare_instruct) into training shards: every
instance's source and target sentences, plus "End of text.", with the number of context
embeddings, so instruction tuning trains on the targets only (pipelines/instruct_data.py).

    python -m jobs.embed_instruct --config configs/embed_instruct.yaml
"""

from jobkit.cli import parse
from pipelines.instruct_data import EmbedInstructConfig, embed


def main() -> None:
    embed(parse(EmbedInstructConfig, __doc__, "configs/embed_instruct.yaml"))


if __name__ == "__main__":
    main()
