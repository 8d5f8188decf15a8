"""Evaluation sets (paper section 5) into the tables the evaluation jobs consume.

- Pre-training sets (C4, MultiEURLEX, Wiki40B) -> CANONICAL_SCHEMA, ready for validation,
  ChineseRelabel and the Segmenter, like training documents.
- Instruction sets (XL-Sum, MLQA, XL-WSD test) -> TASK_SCHEMA: the prompt as `text`, laid out as
  in the instruction data (mimir_model/framing.py), and the gold answers as `references`.
- WikiMatrix -> PAIR_SCHEMA (english, non_english, lang).

Every reader takes a URI of one file or a folder of files: Parquet, JSON lines (`.jsonl`,
`.json.gz` as C4 ships them) or MLQA's SQuAD-style `.json`; local, `s3://`, or an `hf://` glob
streamed through `datasets`. Files are read in sorted order and reading stops after `limit`
records, so "the first N" is deterministic. `lang` is the SONAR code the caller assigns to the
whole file (cmn_Hani for Chinese whose script ChineseRelabel decides). A file that cannot be
read is one quarantined row (pipelines/readers/files.py), as for training inputs.

Source layouts (the files under samples/eval/ follow them):
- C4 (allenai/c4, `multilingual/c4-{xx}-validation.*.json.gz`): text, timestamp, url.
- MultiEURLEX (coastalcph/multi_eurlex, one language config): celex_id, text, labels.
- Wiki40B (google/wiki40b): wikidata_id, text, version_id; text holds _START_ARTICLE_,
  _START_SECTION_, _START_PARAGRAPH_ markers and _NEWLINE_ (see `wiki40b_paragraphs`).
- XL-Sum (csebuetnlp/xlsum `{language}_test.jsonl`): id, url, title, summary, text.
- MLQA (`test-context-{xx}-question-{xx}.json`, SQuAD v1 layout; or the Hub's flat rows
  context, question, answers{answer_start, text}, id).
- XL-WSD generative split: id, sentence, target, definitions (list of gold glosses). This is our
  layout for the split of Basile et al. (2025); map their release to it when converting.
- WikiMatrix (sentence-transformers/parallel-sentences-wikimatrix, config en-xx): english,
  non_english.
"""

from __future__ import annotations

import logging

import pyarrow as pa

from mimir_model.framing import XLWSD_PROMPT, mlqa_prompt, xlsum_prompt
from pipelines.readers.files import DATA_FILES, read_records
from pipelines.readers.schemas import CANONICAL_SCHEMA, PAIR_SCHEMA, TASK_SCHEMA

log = logging.getLogger(__name__)

DOCUMENT_SETS = ("c4", "multi_eurlex", "wiki40b")
TASK_SETS = ("xlsum", "mlqa", "xlwsd")


def wiki40b_paragraphs(text: str) -> str:
    """The paragraphs of a Wiki40B article, one per line. Titles and section headings are
    dropped (they are not sentences of the running text); _NEWLINE_ separates lines."""
    paragraphs = []
    for block in text.split("_START_PARAGRAPH_")[1:]:
        body = block.split("_START_SECTION_")[0].split("_START_ARTICLE_")[0]
        paragraphs += [p.strip() for p in body.split("_NEWLINE_") if p.strip()]
    return "\n".join(paragraphs)


def _records(uri: str, limit: int | None):
    return read_records(uri, None, None, limit, suffixes=DATA_FILES)


def read_documents(dataset: str, uri: str, lang: str, limit: int | None = None) -> pa.Table:
    """The first `limit` documents of one language of C4, MultiEURLEX or Wiki40B."""
    if dataset not in DOCUMENT_SETS:
        raise ValueError(f"unknown pre-training evaluation set {dataset!r}; "
                         f"choose from {DOCUMENT_SETS}")
    records, bad = _records(uri, limit)
    ids, texts = [], []
    for n, r in enumerate(records):
        if dataset == "c4":
            ids.append(r.get("url") or f"c4-{n}")
            texts.append(r.get("text"))
        elif dataset == "multi_eurlex":
            ids.append(r["celex_id"])
            texts.append(r.get("text"))
        else:
            ids.append(r["wikidata_id"])
            text = r.get("text")
            texts.append(wiki40b_paragraphs(text) if isinstance(text, str) else None)
    quarantine = [None] * len(ids) + [reason for _, reason in bad]
    ids += [path for path, _ in bad]
    texts += [None] * len(bad)
    n = len(ids)
    log.info("read %d %s documents (%s) from %s", n, dataset, lang, uri)
    return pa.table([ids, texts, [lang] * n, [dataset] * n, quarantine], schema=CANONICAL_SCHEMA)


def read_tasks(dataset: str, uri: str, lang: str, limit: int | None = None,
               xlwsd_prompt: str = XLWSD_PROMPT) -> pa.Table:
    """The first `limit` examples of XL-Sum, MLQA or XL-WSD as prompt text + references.

    XL-Sum and MLQA prompts are laid out as in the instruction data; references: the summary,
    every gold answer. XL-WSD: prompt = `xlwsd_prompt` filled with the target word and its
    sentence; references = the gold definitions. An example without a prompt or any usable
    reference cannot be scored: it is quarantined (missing_text, no_reference).
    """
    if dataset not in TASK_SETS:
        raise ValueError(f"unknown instruction evaluation set {dataset!r}; "
                         f"choose from {TASK_SETS}")
    records, bad = _records(uri, limit)
    ids, prompts, refs = [], [], []
    for r in records:
        if dataset == "xlsum":
            text = r.get("text")
            prompt = xlsum_prompt(text) if isinstance(text, str) else None
            references = [r.get("summary")]
        elif dataset == "mlqa":
            prompt = mlqa_prompt(r["context"], r["question"])
            references = list(r["answers"]["text"])
        else:
            prompt = xlwsd_prompt.format(target=r["target"], sentence=r["sentence"])
            references = list(r["definitions"])
        ids.append(str(r["id"]))
        prompts.append(prompt)
        refs.append([x for x in references if isinstance(x, str) and x.strip()])
    quarantine = [None if isinstance(p, str) and p.strip() and r else
                  "no_reference" if not r else "missing_text" for p, r in zip(prompts, refs)]
    quarantine += [reason for _, reason in bad]
    ids += [path for path, _ in bad]
    prompts += [None] * len(bad)
    refs += [[] for _ in bad]
    n = len(ids)
    log.info("read %d %s examples (%s) from %s", n, dataset, lang, uri)
    return pa.table([ids, prompts, refs, [lang] * n, [dataset] * n, quarantine],
                    schema=TASK_SCHEMA)


def read_pairs(uri: str, lang: str, limit: int | None = None) -> pa.Table:
    """The first `limit` (english, non_english) pairs of one WikiMatrix language config."""
    records, bad = _records(uri, limit)
    english = [r.get("english") for r in records] + [None] * len(bad)
    other = [r.get("non_english") for r in records] + [None] * len(bad)
    quarantine = [None if isinstance(e, str) and isinstance(o, str) else "missing_text"
                  for e, o in zip(english, other)][:len(records)] + [r for _, r in bad]
    log.info("read %d WikiMatrix pairs (%s) from %s", len(records), lang, uri)
    return pa.table([english, other, [lang] * len(english), quarantine], schema=PAIR_SCHEMA)
