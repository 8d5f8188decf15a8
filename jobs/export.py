"""Export a checkpoint as a self-contained folder: config.json, model.safetensors (float32 or
bfloat16), normalizer.safetensors and a model card (generation/export.py), which
`Mimir.from_pretrained(DIR)` loads without Ray or DeepSpeed.

    python -m jobs.export --checkpoint URI --out DIR [--dtype bfloat16]
"""

from generation.export import ExportConfig, export
from jobkit.cli import parse

FLAGS = {"--checkpoint": "checkpoint", "--out": "out", "--dtype": "dtype"}


def main() -> None:
    print(f"exported: {export(parse(ExportConfig, __doc__, 'configs/export.yaml', flags=FLAGS))}")


if __name__ == "__main__":
    main()
