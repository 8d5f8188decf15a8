"""The canonical tables readers produce. Every one carries `quarantine`: null for a good row,
else the reason it was set aside (the row is kept, never silently dropped)."""

from __future__ import annotations

import pyarrow as pa

# Documents (FineWeb-Edu, FineWeb-2; the pre-training evaluation sets C4, MultiEURLEX,
# Wiki40B). `lang` is a SONAR code; Chinese stays cmn_Hani until ChineseRelabel.
CANONICAL_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("text", pa.string()),
    ("lang", pa.string()),
    ("source", pa.string()),
    ("quarantine", pa.string()),
])

# Instruction data (oasst2, Bactrian-X, Aya, MLQA train, XL-Sum train, synthetic chats):
# turns are user, assistant, user, assistant, ...
CONVERSATION_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("source", pa.string()),
    ("lang", pa.string()),
    ("turns", pa.list_(pa.string())),
    ("quarantine", pa.string()),
])

# Instruction evaluation sets (XL-Sum, MLQA, XL-WSD test): the prompt as `text` (segmented
# later, as in training) and the gold answers.
TASK_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("text", pa.string()),
    ("references", pa.list_(pa.string())),
    ("lang", pa.string()),
    ("source", pa.string()),
    ("quarantine", pa.string()),
])

# Parallel sentences (WikiMatrix) of the alignment pilot.
PAIR_SCHEMA = pa.schema([
    ("english", pa.string()),
    ("non_english", pa.string()),
    ("lang", pa.string()),
    ("quarantine", pa.string()),
])
