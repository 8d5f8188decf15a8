"""Instruction data: conversations -> segmented turns -> instances (paper Table 6) and the
mixtures (the output is a committed Parquet set, see pipelines/shards.py).

An instance is one assistant turn of a conversation:
  source_sentences = [USER] + prompt 1 + [ASSISTANT] + response 1 + ... + [USER] + prompt k
                     + [ASSISTANT]
  target_sentences = response k + ["End of text."]
where [USER] and [ASSISTANT] are "User turn." and "Assistant turn." in the conversation's
language (TURN_MARKERS). Earlier responses appear in the context without "End of text.": at
inference the generated end-of-text embedding stops generation and is not kept in the chat.

"End of text." is NOT translated: the paper's Table 6 prints it in English only (while it says
the two turn markers are translated), and inference stops on the cosine to one fixed embedding,
emb("End of text."), as in pre-training. It must be embedded as English (END_OF_TEXT_LANG)
whatever the conversation's language, so every target ends with the same vector.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from mimir_model.framing import END_OF_TEXT, TURN_MARKERS
from pipelines.stage import Stage, set_column

log = logging.getLogger(__name__)

INSTANCE_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("source", pa.string()),
    ("lang", pa.string()),
    ("source_sentences", pa.list_(pa.string())),
    ("target_sentences", pa.list_(pa.string())),
    ("quarantine", pa.string()),
])


class SegmentTurns(Stage):
    """Add `turn_sentences: list<list<string>>` to a conversation table: every turn segmented
    by one Segmenter call per batch (all turns of all conversations together, so SaT packs
    them into full blocks). A conversation with a turn the segmenter rejects (empty text) is
    quarantined with that reason. `segmenter` is any Segmenter-like stage; by default a
    pipelines.segment.Segmenter built from `segmenter_kwargs`."""

    name = "segment_turns"

    def __init__(self, segmenter: Any = None, **segmenter_kwargs: Any) -> None:
        if segmenter is None:
            from pipelines.segment import Segmenter
            segmenter = Segmenter(**segmenter_kwargs)
        self.segmenter = segmenter
        super().__init__()

    def process(self, table: pa.Table) -> pa.Table:
        turns = table.column("turns").to_pylist()
        quarantine = table.column("quarantine").to_pylist()
        owner, texts = [], []
        for i, (ts, q) in enumerate(zip(turns, quarantine)):
            if q is None:
                owner.extend([i] * len(ts))
                texts.extend(ts)
        flat_sentences, flat_quarantine = [], []
        if texts:
            flat = self.segmenter(pa.table({"text": pa.array(texts, pa.string()),
                                            "quarantine": pa.nulls(len(texts), pa.string())}))
            self.counts.tally.update(self.segmenter.counts.take().tally)
            flat_sentences = flat.column("sentences").to_pylist()
            flat_quarantine = flat.column("quarantine").to_pylist()
        sentences: list[list[list[str]] | None] = [
            [] if q is None else None for q in quarantine]
        for i, s, q in zip(owner, flat_sentences, flat_quarantine):
            if q is not None and quarantine[i] is None:
                quarantine[i] = q
                self.counts.quarantine(q)
            sentences[i].append(s)
        sentences = [s if q is None else None for s, q in zip(sentences, quarantine)]
        table = set_column(table, "quarantine", pa.array(quarantine, pa.string()))
        table = set_column(table, "turn_sentences",
                           pa.array(sentences, pa.list_(pa.list_(pa.string()))))
        return table


class FormatInstances(Stage):
    """Segmented conversations -> one instance per assistant turn (INSTANCE_SCHEMA).

    Instance ids are `{conversation id}#{k}` for the k-th assistant turn (from 0). A
    conversation in a language without turn markers is quarantined as unsupported_lang. A
    quarantined conversation becomes one quarantined row (id = the conversation's id, null
    sentences), so nothing is dropped. Tallies: instances, conversations, sentences (all
    sentences of all instances, markers and "End of text." included).
    """

    name = "format_instances"

    def __init__(self) -> None:
        super().__init__()

    def process(self, table: pa.Table) -> pa.Table:
        out: dict[str, list] = {name: [] for name in INSTANCE_SCHEMA.names}
        columns = [table.column(c).to_pylist()
                   for c in ("id", "source", "lang", "turn_sentences", "quarantine")]
        for cid, source, lang, turns, q in zip(*columns):
            if q is None and lang not in TURN_MARKERS:
                q = "unsupported_lang"
                self.counts.quarantine(q)
            if q is not None:
                for name, value in zip(INSTANCE_SCHEMA.names, (cid, source, lang, None, None, q)):
                    out[name].append(value)
                continue
            self.counts.tally["conversations"] += 1
            user, assistant = TURN_MARKERS[lang]
            context: list[str] = []
            for k in range(len(turns) // 2):
                context = context + [user, *turns[2 * k], assistant]
                target = [*turns[2 * k + 1], END_OF_TEXT]
                for name, value in zip(INSTANCE_SCHEMA.names,
                                       (f"{cid}#{k}", source, lang, context, target, None)):
                    out[name].append(value)
                self.counts.tally["instances"] += 1
                self.counts.tally["sentences"] += len(context) + len(target)
                context = context + turns[2 * k + 1]
        result = pa.table(out, schema=INSTANCE_SCHEMA)
        return result


@dataclass(frozen=True)
class Mixture:
    name: str
    multilingual: bool  # False: English conversations only
    eval_train: bool  # include the MLQA and XL-Sum train sets


# The paper's four instruction-tuning settings.
MIXTURES: dict[str, Mixture] = {m.name: m for m in (
    Mixture("multilingual_mlqa_xlsum", multilingual=True, eval_train=True),
    Mixture("multilingual", multilingual=True, eval_train=False),
    Mixture("english_mlqa_xlsum", multilingual=False, eval_train=True),
    Mixture("english", multilingual=False, eval_train=False),
)}
EVAL_TRAIN_SOURCES = frozenset({"mlqa", "xlsum"})


def mixture(name: str) -> Mixture:
    if name not in MIXTURES:
        raise ValueError(f"unknown mixture {name!r}; known: {', '.join(MIXTURES)}")
    return MIXTURES[name]


class MixtureFilter(Stage):
    """Keep the conversations a mixture selects. Rows outside it are not bad data, so they are
    removed (not quarantined) and counted: excluded_eval_train, excluded_non_english.
    Quarantined rows pass through, so their reasons still reach the quarantine output."""

    name = "mixture"

    def __init__(self, mixture_name: str) -> None:
        self.mixture = mixture(mixture_name)
        super().__init__()

    def process(self, table: pa.Table) -> pa.Table:
        keep = []
        for source, lang, q in zip(table.column("source").to_pylist(),
                                   table.column("lang").to_pylist(),
                                   table.column("quarantine").to_pylist()):
            if q is None and not self.mixture.eval_train and source in EVAL_TRAIN_SOURCES:
                self.counts.tally["excluded_eval_train"] += 1
                keep.append(False)
            elif q is None and not self.mixture.multilingual and lang != "eng_Latn":
                self.counts.tally["excluded_non_english"] += 1
                keep.append(False)
            else:
                keep.append(True)
        table = table.filter(pa.array(keep, pa.bool_()))
        return table



class InstanceSentences(Stage):
    """Prepares instances for SonarEmbed: `sentences` = source sentences then targets without
    the final "End of text." (SonarEmbed appends it, embedded as English), and `n_context` =
    the number of source sentences, which the trainer does not train on."""

    name = "instance_sentences"

    def __init__(self) -> None:
        super().__init__()

    def process(self, table: pa.Table) -> pa.Table:
        quarantine = table.column("quarantine").to_pylist()
        sentences, n_context = [], []
        for i, (src, tgt) in enumerate(zip(table.column("source_sentences").to_pylist(),
                                           table.column("target_sentences").to_pylist())):
            if quarantine[i] is None and (not src or not tgt or tgt[-1] != END_OF_TEXT
                                          or len(tgt) < 2):
                quarantine[i] = "malformed_instance"
                self.counts.quarantine("malformed_instance")
            if quarantine[i] is None:
                sentences.append(src + tgt[:-1])
                n_context.append(len(src))
            else:
                sentences.append([])
                n_context.append(0)
        self.counts.tally["target_sentences"] += sum(
            len(s) - c for s, c, q in zip(sentences, n_context, quarantine) if q is None)
        table = set_column(table, "quarantine", pa.array(quarantine, pa.string()))
        table = set_column(table, "sentences", pa.array(sentences, pa.list_(pa.string())))
        return set_column(table, "n_context", pa.array(n_context, pa.int32()))
