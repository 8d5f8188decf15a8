"""Readers of the evaluation sets into tables the evaluation jobs consume.

Pre-training sets (C4, MultiEURLEX, Wiki40B) become the canonical columns of
`pipelines.sources.CANONICAL_SCHEMA` (id, text, lang, source, quarantine), ready for
ChineseRelabel and the Segmenter. Instruction sets (XL-Sum, MLQA, XL-WSD) become
`INSTRUCT_SCHEMA`: the prompt as `text` (segmented later, as in training) and the gold answers
as `references`. WikiMatrix becomes (english, non_english, lang).

Every reader takes a URI of one file or a folder of files: Parquet, JSON lines (`.jsonl`,
`.json.gz` as C4 ships them), or MLQA's SQuAD-style `.json`; local, `s3://`, or an `hf://`
glob streamed through `datasets` (needs the Hub). Files are read in sorted order and reading
stops after `limit` records, so "the first N" is deterministic. `lang` is the SONAR code the
caller assigns to the whole file (cmn_Hani for Chinese whose script ChineseRelabel decides).

Source layouts (the sample files under tests/data/samples/eval/ follow them):
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

import io
import json
import logging
from typing import Iterator

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipelines import storage
from pipelines.sources import CANONICAL_SCHEMA, mlqa_prompt, xlsum_prompt

log = logging.getLogger(__name__)

INSTRUCT_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("text", pa.string()),  # the prompt
    ("references", pa.list_(pa.string())),
    ("lang", pa.string()),
    ("source", pa.string()),
    ("quarantine", pa.string()),
])

WIKIMATRIX_SCHEMA = pa.schema([
    ("english", pa.string()),
    ("non_english", pa.string()),
    ("lang", pa.string()),
])

PRETRAIN_DATASETS = ("c4", "multi_eurlex", "wiki40b")
INSTRUCT_DATASETS = ("xlsum", "mlqa", "xlwsd")

# XL-WSD asks for a definition; the instance's sentence and word fill this template.
XLWSD_PROMPT = 'What is the meaning of the word "{target}" in the following sentence? {sentence}'


def iter_records(uri: str, limit: int | None = None) -> Iterator[dict]:
    """The records of a file or folder of Parquet / JSON lines / SQuAD JSON files, in order."""
    if uri.startswith("hf://"):
        yield from _iter_hub(uri, limit)
        return
    fs, root = storage.resolve(uri)
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.File:
        files = [root]
    elif info.type == pafs.FileType.Directory:
        found = fs.get_file_info(pafs.FileSelector(root, recursive=True))
        files = sorted(f.path for f in found if f.type == pafs.FileType.File
                       and f.path.endswith((".parquet", ".jsonl", ".json.gz", ".json")))
    else:
        raise FileNotFoundError(f"no such file or directory: {uri}")
    if not files:
        raise FileNotFoundError(f"no Parquet or JSON files under {uri}")
    n = 0
    for path in files:
        for record in _iter_file(fs, path):
            if limit is not None and n >= limit:
                return
            n += 1
            yield record


def _iter_file(fs: pafs.FileSystem, path: str) -> Iterator[dict]:
    if path.endswith(".parquet"):
        with fs.open_input_file(path) as f:
            for batch in pq.ParquetFile(f).iter_batches():
                yield from batch.to_pylist()
        return
    data = storage.read_bytes(fs, path)  # pyarrow's input streams un-gzip .gz files
    if path.endswith(".json"):  # one JSON document: MLQA's SQuAD layout
        yield from _iter_squad(json.loads(data))
        return
    for line in io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"):
        if line.strip():
            yield json.loads(line)


def _iter_squad(doc: dict) -> Iterator[dict]:
    """SQuAD v1 layout (MLQA's files) as flat rows like the Hub's."""
    for article in doc["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                yield {"id": qa["id"], "context": paragraph["context"],
                       "question": qa["question"],
                       "answers": {"text": [a["text"] for a in qa["answers"]],
                                   "answer_start": [a["answer_start"] for a in qa["answers"]]}}


def _iter_hub(uri: str, limit: int | None) -> Iterator[dict]:
    from datasets import load_dataset

    kind = "parquet" if ".parquet" in uri else "json"
    stream = load_dataset(kind, data_files=uri, split="train", streaming=True)
    for n, row in enumerate(stream):
        if limit is not None and n >= limit:
            return
        yield row


def wiki40b_paragraphs(text: str) -> str:
    """The paragraphs of a Wiki40B article, one per line. Titles and section headings are
    dropped (they are not sentences of the running text); _NEWLINE_ separates lines."""
    paragraphs = []
    for block in text.split("_START_PARAGRAPH_")[1:]:
        body = block.split("_START_SECTION_")[0].split("_START_ARTICLE_")[0]
        paragraphs += [p.strip() for p in body.split("_NEWLINE_") if p.strip()]
    return "\n".join(paragraphs)


def read_pretrain(dataset: str, uri: str, lang: str, limit: int | None = None) -> pa.Table:
    """The first `limit` documents of one language of C4, MultiEURLEX or Wiki40B."""
    ids, texts = [], []
    for n, r in enumerate(iter_records(uri, limit)):
        if dataset == "c4":
            ids.append(r.get("url") or f"c4-{n}")
            texts.append(r.get("text"))
        elif dataset == "multi_eurlex":
            ids.append(r["celex_id"])
            texts.append(r.get("text"))
        elif dataset == "wiki40b":
            ids.append(r["wikidata_id"])
            text = r.get("text")
            texts.append(wiki40b_paragraphs(text) if isinstance(text, str) else None)
        else:
            raise ValueError(f"unknown pre-training evaluation set {dataset!r}; "
                             f"choose from {PRETRAIN_DATASETS}")
    n = len(ids)
    log.info("read %d %s documents (%s) from %s", n, dataset, lang, uri)
    return pa.table([ids, texts, [lang] * n, [dataset] * n, [None] * n], schema=CANONICAL_SCHEMA)


def read_instruct(dataset: str, uri: str, lang: str, limit: int | None = None,
                  xlwsd_prompt: str = XLWSD_PROMPT) -> pa.Table:
    """The first `limit` examples of XL-Sum, MLQA or XL-WSD as prompt text + references.

    XL-Sum and MLQA prompts are laid out as in the instruction data (`xlsum_prompt`,
    `mlqa_prompt` of pipelines/sources.py); references: the summary, every gold answer. XL-WSD:
    prompt = `xlwsd_prompt` filled with the target word and its sentence; references = the
    gold definitions.
    """
    ids, prompts, refs = [], [], []
    for r in iter_records(uri, limit):
        if dataset == "xlsum":
            text = r.get("text")
            prompt = xlsum_prompt(text) if isinstance(text, str) else None
            references = [r.get("summary")]
        elif dataset == "mlqa":
            prompt = mlqa_prompt(r["context"], r["question"])
            references = list(r["answers"]["text"])
        elif dataset == "xlwsd":
            prompt = xlwsd_prompt.format(target=r["target"], sentence=r["sentence"])
            references = list(r["definitions"])
        else:
            raise ValueError(f"unknown instruction evaluation set {dataset!r}; "
                             f"choose from {INSTRUCT_DATASETS}")
        ids.append(str(r["id"]))
        prompts.append(prompt)
        refs.append([x for x in references if isinstance(x, str) and x.strip()])
    # An example without a prompt or any usable reference cannot be scored: quarantined.
    quarantine = [None if isinstance(p, str) and p.strip() and r else
                  "no_reference" if not r else "missing_text" for p, r in zip(prompts, refs)]
    n = len(ids)
    log.info("read %d %s examples (%s) from %s", n, dataset, lang, uri)
    return pa.table([ids, prompts, refs, [lang] * n, [dataset] * n, quarantine],
                    schema=INSTRUCT_SCHEMA)


def read_wikimatrix(uri: str, lang: str, limit: int | None = None) -> pa.Table:
    """The first `limit` (english, non_english) pairs of one WikiMatrix language config."""
    english, other = [], []
    for r in iter_records(uri, limit):
        english.append(r["english"])
        other.append(r["non_english"])
    log.info("read %d WikiMatrix pairs (%s) from %s", len(english), lang, uri)
    return pa.table([english, other, [lang] * len(english)], schema=WIKIMATRIX_SCHEMA)
