"""Synthetic chats: Everyday-Conversations topics (kind chat, paper Table 7) or OpenMathInstruct-2
problems (kind math, Table 8) x target languages -> prompts -> an OpenAI-compatible chat
endpoint -> validated multi-turn chats, written as Parquet parts (pipelines/synthesize.py).

    OPENAI_BASE_URL=http://host:8000/v1 OPENAI_MODEL=... OPENAI_API_KEY=... \
        python -m jobs.synthesize_chats --config configs/synthesize_chats.yaml kind=math
"""

from jobkit.cli import parse
from pipelines.synthesize import SynthConfig, run


def main() -> None:
    run(parse(SynthConfig, __doc__, "configs/synthesize_chats.yaml"))


if __name__ == "__main__":
    main()
