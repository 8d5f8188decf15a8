"""Generate text from a checkpoint: prompts in any SONAR language in, sentences in any SONAR
language out (SaT splits each prompt, instruction-tuned checkpoints get their turn framing,
the paper's sampler, stop at "End of text."; generation/prompts.py says what is read and
written).

    python -m jobs.generate --checkpoint URI --input prompts.jsonl --output out.jsonl
    echo "Ein Satz. Noch einer." | python -m jobs.generate --checkpoint URI \
        --source-lang deu_Latn --target-lang fra_Latn

URI: a checkpoint or run folder of jobs.pretrain / jobs.finetune (local or s3://), or a folder
written by jobs.export. Runs in this process, on the GPU when there is one.
"""

from generation.prompts import GenerateConfig, run
from jobkit.cli import parse

FLAGS = {"--checkpoint": "checkpoint", "--input": "input", "--output": "output",
         "--source-lang": "source_lang", "--target-lang": "target_lang",
         "--max-sentences": "max_sentences", "--seed": "seed", "--device": "device"}


def main() -> None:
    run(parse(GenerateConfig, __doc__, "configs/generate.yaml", flags=FLAGS))


if __name__ == "__main__":
    main()
