"""Bad-input checks shared by the readers and the `ValidateText` stage.

Every check returns a short snake_case reason (the row's `quarantine` value) or None. Readers
apply `value_problem` while they turn source rows into Arrow (a lone surrogate or a non-string
cannot be stored in an Arrow string column at all); `ValidateText` applies the content checks
(control characters, size cap) to a text column or to the turns of a conversation.
"""

from __future__ import annotations

import re
from typing import Any

import pyarrow as pa

from pipelines.stage import Stage

# Default size cap: far above any real web page or chat turn, low enough that one runaway
# document cannot stall a segmenter actor.
MAX_CHARS = 1_000_000

# C0 and C1 control characters, DEL included, except the whitespace ones (\t \n \v \f \r) that
# plain text legitimately holds and the segmenter treats as spaces.
_CONTROL = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x9f]")
_SURROGATE = re.compile("[\ud800-\udfff]")
# Something other than whitespace and Unicode's default-ignorable code points (zero-width
# spaces and joiners, bidi and format marks, variation selectors, soft hyphens, tags): a text
# without any has nothing to read, and a zero-width-only text crashes wtpsplit 2.2.2.
_VISIBLE = re.compile("[^\\s\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f"
                      "\u200b-\u200f\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff"
                      "\uffa0\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff]")


def value_problem(value: Any) -> str | None:
    """Why a raw source value cannot be a text: missing, not a string, or not encodable."""
    if value is None:
        return "missing_text"
    if not isinstance(value, str):
        return "non_string_text"
    if _SURROGATE.search(value):
        return "invalid_unicode"
    return None


def text_problem(value: Any, max_chars: int = MAX_CHARS) -> str | None:
    """`value_problem`, then the content checks: control characters and the size cap."""
    reason = value_problem(value)
    if reason is not None:
        return reason
    if _CONTROL.search(value):
        return "control_chars"
    if len(value) > max_chars:
        return "too_long"
    if value.strip() and not _VISIBLE.search(value):  # (empty and whitespace-only texts are
        return "no_visible_text"  # the segmenter's empty_text)
    return None


def clean_value(value: Any) -> tuple[str | None, str | None]:
    """(value to store, quarantine reason): values Arrow cannot hold are stored as null."""
    reason = value_problem(value)
    return (None if reason else value), reason


def turns_problem(turns: Any, max_chars: int = MAX_CHARS) -> str | None:
    """A conversation is user, assistant, user, assistant, ...: an even number (at least 2) of
    texts that each pass `text_problem`."""
    if not isinstance(turns, list) or not turns:
        return "missing_turns"
    if len(turns) % 2:
        return "unanswered_turn"
    for turn in turns:
        reason = text_problem(turn, max_chars)
        if reason is not None:
            return reason
    return None


class ValidateText(Stage):
    """Quarantine rows whose `column` (a string, or a list of conversation turns) fails the
    checks above. Already-quarantined rows pass through untouched."""

    name = "validate"

    def __init__(self, column: str = "text", max_chars: int = MAX_CHARS) -> None:
        self.column = column
        self.max_chars = max_chars
        super().__init__()

    def process(self, table: pa.Table) -> pa.Table:
        values = table.column(self.column).to_pylist()
        quarantine = table.column("quarantine").to_pylist()
        for i, (value, q) in enumerate(zip(values, quarantine)):
            if q is not None:
                continue
            if isinstance(value, list) or self.column == "turns":
                reason = turns_problem(value, self.max_chars)
            else:
                reason = text_problem(value, self.max_chars)
            if reason is not None:
                quarantine[i] = reason
                self.counts.quarantine(reason)
        index = table.column_names.index("quarantine")
        table = table.set_column(index, "quarantine", pa.array(quarantine, pa.string()))
        return table
