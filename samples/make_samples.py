"""Write the shipped sample data under samples/ from the texts below.

All texts are original, written for this project in the style of educational web pages. The
files follow the real Hub schemas (column names and types) of FineWeb-Edu, FineWeb-2, oasst2,
XL-Sum, Bactrian-X, Aya, MLQA, OpenMathInstruct-2 and Everyday-Conversations, so the readers are exercised on the same layout as the real datasets. Metadata
(ids, urls, scores) is synthetic but derived deterministically from the texts.

Run from the repository root: python -m samples.make_samples
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from samples.fineweb_texts import ENG, FINEWEB2

log = logging.getLogger(__name__)

OUT = Path(__file__).resolve().parent
DUMP = "CC-MAIN-2024-10"


def _digest(*parts: str) -> bytes:
    return hashlib.sha256("\x1f".join(parts).encode()).digest()


def _urn(*parts: str) -> str:
    return f"<urn:uuid:{uuid.UUID(bytes=_digest(*parts)[:16])}>"


def _fraction(*parts: str) -> float:
    """A deterministic number in [0, 1) for synthetic scores."""
    return int.from_bytes(_digest(*parts)[:4], "big") / 2**32


def _warc_path(i: int) -> str:
    return (f"s3://commoncrawl/crawl-data/{DUMP}/segments/1707947473347.0/warc/"
            f"{DUMP}-20240221075342-{i:05d}.warc.gz")


def fineweb_edu_table(texts: list[str]) -> pa.Table:
    rows = []
    for i, text in enumerate(texts):
        score = 2.5 + 2.0 * _fraction("score", text)
        rows.append({
            "text": text,
            "id": _urn("fineweb-edu", str(i), text),
            "dump": DUMP,
            "url": f"https://learn.example.org/articles/{i:03d}",
            "file_path": _warc_path(i),
            "language": "en",
            "language_score": round(0.90 + 0.1 * _fraction("lid", text), 4),
            "token_count": round(len(text.split()) * 1.3),
            "score": round(score, 4),
            "int_score": round(score),
        })
    schema = pa.schema([
        ("text", pa.string()), ("id", pa.string()), ("dump", pa.string()), ("url", pa.string()),
        ("file_path", pa.string()), ("language", pa.string()), ("language_score", pa.float64()),
        ("token_count", pa.int64()), ("score", pa.float64()), ("int_score", pa.int64()),
    ])
    return pa.Table.from_pylist(rows, schema=schema)


def fineweb2_table(config: str, iso3: str, script: str, texts: list[str]) -> pa.Table:
    rows = []
    for i, text in enumerate(texts):
        lid = round(0.85 + 0.15 * _fraction("lid", config, text), 4)
        rows.append({
            "text": text,
            "id": _urn("fineweb-2", config, str(i), text),
            "dump": DUMP,
            "url": f"https://{iso3}.example.org/page/{i:03d}",
            "date": f"2024-02-{21 + i % 7:02d}T{i % 24:02d}:15:00Z",
            "file_path": _warc_path(100 + i),
            "language": iso3,
            "language_score": lid,
            "language_script": script,
            "minhash_cluster_size": 1 + i % 3,
            # FineWeb-2 stores top_langs as a JSON string.
            "top_langs": json.dumps({f"{config}_score": lid}),
        })
    schema = pa.schema([
        ("text", pa.string()), ("id", pa.string()), ("dump", pa.string()), ("url", pa.string()),
        ("date", pa.string()), ("file_path", pa.string()), ("language", pa.string()),
        ("language_score", pa.float64()), ("language_script", pa.string()),
        ("minhash_cluster_size", pa.int64()), ("top_langs", pa.string()),
    ])
    return pa.Table.from_pylist(rows, schema=schema)


# oasst2 conversation trees: (local id, parent local id, role, rank, deleted, text).
# Ranks order sibling assistant replies (0 = best); prompter messages have no rank.
OASST2_TREES = {
    "en": [
        ("p1", None, "prompter", None, False,
         "Why do leaves change colour in autumn? My daughter asked me and I did not know what to "
         "say."),
        ("a1", "p1", "assistant", 0, False,
         "In summer, leaves are green because they are full of chlorophyll, the pigment plants use "
         "to capture sunlight. When days get shorter and colder, trees stop making chlorophyll. "
         "The green fades and reveals yellow and orange pigments that were there all along. Some "
         "trees also produce new red pigments in autumn."),
        ("a2", "p1", "assistant", 1, False,
         "Leaves change colour because the tree stops feeding them in autumn. The green disappears "
         "and other colours show through."),
        ("a3", "p1", "assistant", 2, False, "Because of the cold weather."),
        ("a4", "p1", "assistant", None, True, "I do not know, sorry."),
        ("p2", "a1", "prompter", None, False, "Why do some trees keep their leaves all winter?"),
        ("a5", "p2", "assistant", 0, False,
         "Evergreen trees such as pines have needles with a thick waxy coating. The coating "
         "reduces water loss and protects the needles from frost. Because they keep their needles, "
         "evergreens can start photosynthesis as soon as the weather allows."),
        ("a6", "p2", "assistant", 1, False, "Evergreens have tough needles that survive the cold."),
    ],
    "fr": [
        ("p1", None, "prompter", None, False,
         "Peux-tu m'expliquer simplement ce qu'est une fraction ?"),
        ("a1", "p1", "assistant", 0, False,
         "Une fraction représente une partie d'un tout. Si tu coupes une pizza en quatre parts "
         "égales et que tu en manges une, tu as mangé un quart de la pizza. Le nombre du bas "
         "indique en combien de parts on a coupé, le nombre du haut combien de parts on prend."),
        ("a2", "p1", "assistant", 1, False, "C'est un nombre écrit avec une barre, comme 1/2."),
        ("p2", "a2", "prompter", None, False, "Et que veut dire 3/4 ?"),
        ("a3", "p2", "assistant", 0, False, "Cela veut dire trois parts sur quatre."),
    ],
    "de": [
        ("p1", None, "prompter", None, False, "Wie lerne ich am besten Vokabeln?"),
        ("a1", "p1", "assistant", 0, False,
         "Lerne jeden Tag ein paar neue Wörter und wiederhole die alten in größer werdenden "
         "Abständen. Karteikarten helfen dabei. Benutze die neuen Wörter in eigenen Sätzen, dann "
         "bleiben sie besser im Gedächtnis."),
        ("p2", "a1", "prompter", None, False, "Wie viele Wörter pro Tag sind sinnvoll?"),
        ("a2", "p2", "assistant", 0, False,
         "Für die meisten Lernenden sind zehn bis zwanzig neue Wörter pro Tag gut machbar. "
         "Wichtiger als die Menge ist die regelmäßige Wiederholung."),
        ("a3", "p2", "assistant", 1, False, "So viele, wie du schaffst."),
    ],
}


def oasst2_table() -> pa.Table:
    rows = []
    for tree_lang, messages in OASST2_TREES.items():
        ids = {local: str(uuid.UUID(bytes=_digest("oasst2", tree_lang, local)[:16]))
               for local, *_ in messages}
        tree_id = ids[messages[0][0]]
        for n, (local, parent, role, rank, deleted, text) in enumerate(messages):
            rows.append({
                "message_id": ids[local],
                "parent_id": ids[parent] if parent else None,
                "user_id": str(uuid.UUID(bytes=_digest("user", tree_lang, str(n % 3))[:16])),
                "created_date": f"2023-05-{10 + n:02d}T12:00:00.000000+00:00",
                "text": text,
                "role": role,
                "lang": tree_lang,
                "review_count": 3,
                "review_result": True,
                "deleted": deleted,
                "rank": rank,
                "synthetic": False,
                "model_name": None,
                "message_tree_id": tree_id,
                "tree_state": "ready_for_export",
                "emojis": {"name": ["+1"], "count": [1 + n % 2]},
                "labels": {"name": ["spam", "quality"], "value": [0.0, 0.75], "count": [3, 3]},
            })
    schema = pa.schema([
        ("message_id", pa.string()), ("parent_id", pa.string()), ("user_id", pa.string()),
        ("created_date", pa.string()), ("text", pa.string()), ("role", pa.string()),
        ("lang", pa.string()), ("review_count", pa.int32()), ("review_result", pa.bool_()),
        ("deleted", pa.bool_()), ("rank", pa.int32()), ("synthetic", pa.bool_()),
        ("model_name", pa.string()), ("message_tree_id", pa.string()), ("tree_state", pa.string()),
        ("emojis", pa.struct([("name", pa.list_(pa.string())), ("count", pa.list_(pa.int32()))])),
        ("labels", pa.struct([("name", pa.list_(pa.string())), ("value", pa.list_(pa.float64())),
                              ("count", pa.list_(pa.int32()))])),
    ])
    return pa.Table.from_pylist(rows, schema=schema)


# XL-Sum rows per config (language name): (title, summary, text).
XLSUM = {
    "english": [
        ("School gardens grow in popularity",
         "More primary schools are turning part of their playgrounds into vegetable gardens.",
         "More primary schools are turning part of their playgrounds into vegetable gardens. "
         "Teachers say pupils learn about food, science and teamwork. One head teacher said the "
         "children now ask to eat the radishes they grew themselves. The schools plan to share "
         "seeds with each other next spring."),
        ("Volcano monitoring improves warnings",
         "New sensors help scientists warn communities near active volcanoes earlier.",
         "Scientists have installed new sensors around an active volcano. The instruments measure "
         "small earthquakes and changes in the shape of the ground. Researchers say the data could "
         "give nearby towns several extra hours of warning before an eruption."),
        ("Teenagers need more sleep, study finds",
         "A study suggests most teenagers sleep less than the recommended eight hours.",
         "A new study suggests that most teenagers sleep less than the recommended eight hours a "
         "night. The researchers blame screens and early school start times. They advise switching "
         "off phones an hour before bed."),
    ],
    "french": [
        ("Les jardins scolaires se multiplient",
         "De plus en plus d'écoles transforment une partie de leur cour en potager.",
         "De plus en plus d'écoles primaires transforment une partie de leur cour en potager. Les "
         "enseignants expliquent que les élèves y apprennent les sciences et le travail en équipe. "
         "Les écoles prévoient d'échanger des graines au printemps prochain."),
        ("Des capteurs pour surveiller les volcans",
         "De nouveaux capteurs permettent d'alerter plus tôt les habitants proches des volcans.",
         "Des scientifiques ont installé de nouveaux capteurs autour d'un volcan actif. Les "
         "instruments mesurent les petits séismes et les déformations du sol. Les habitants "
         "pourraient ainsi être prévenus plusieurs heures avant une éruption."),
    ],
}


def xlsum_table(config: str) -> pa.Table:
    rows = []
    for i, (title, summary, text) in enumerate(XLSUM[config]):
        story = f"{config}-{40000000 + i}"
        rows.append({"id": story, "url": f"https://news.example.org/{config}/{story}",
                     "title": title, "summary": summary, "text": text})
    schema = pa.schema([(c, pa.string()) for c in ("id", "url", "title", "summary", "text")])
    return pa.Table.from_pylist(rows, schema=schema)


# Bactrian-X rows per config: (instruction, input, output).
BACTRIAN_X = {
    "en": [
        ("Give three tips for staying focused while studying.", "",
         "Put your phone in another room. Work in short blocks with small breaks. Start with "
         "the hardest task while you are fresh."),
        ("Translate the sentence into French.", "The garden is full of flowers.",
         "Le jardin est plein de fleurs."),
    ],
    "fr": [
        ("Explique ce qu'est une fraction.", "",
         "Une fraction représente une partie d'un tout. Elle s'écrit avec un numérateur et un "
         "dénominateur."),
        ("Résume le texte en une phrase.",
         "Les abeilles transportent le pollen de fleur en fleur. Sans elles, beaucoup de fruits "
         "ne pousseraient pas.",
         "Les abeilles pollinisent les fleurs, ce qui permet aux fruits de pousser."),
    ],
    "zh": [
        ("请解释为什么天空是蓝色的。", "",
         "阳光中的蓝光波长较短，被空气分子散射得更多。所以我们看到的天空是蓝色的。"),
    ],
}


def bactrian_x_table(config: str) -> pa.Table:
    rows = [{"instruction": instruction, "input": inp, "output": output,
             "id": str(uuid.UUID(bytes=_digest("bactrian-x", config, str(i))[:16]))}
            for i, (instruction, inp, output) in enumerate(BACTRIAN_X[config])]
    schema = pa.schema([(c, pa.string()) for c in ("instruction", "input", "output", "id")])
    return pa.Table.from_pylist(rows, schema=schema)


# Aya rows: (inputs, targets, language, language_code). The last rows are bad input on
# purpose: a language we do not train on, and a missing target.
AYA = [
    ("What is the capital of Italy?", "The capital of Italy is Rome.", "English", "eng"),
    ("Quelle est la plus haute montagne de France ?",
     "Le mont Blanc, qui culmine à environ 4 806 mètres.", "French", "fra"),
    ("Was ist ein Regenbogen?",
     "Ein Regenbogen entsteht, wenn Sonnenlicht in Regentropfen gebrochen wird.", "German",
     "deu"),
    ("¿Cuántos días tiene un año bisiesto?", "Un año bisiesto tiene 366 días.", "Spanish",
     "spa"),
    ("Ni nini maana ya neno 'shule'?", "Neno 'shule' lina maana ya mahali pa kusomea.",
     "Swahili", "swh"),
    ("Kí ni olú ìlú Nàìjíríà?", "Abuja ni olú ìlú Nàìjíríà.", "Yoruba", "yor"),
    ("What is two plus two?", None, "English", "eng"),
]


def aya_table() -> pa.Table:
    rows = [{"inputs": inputs, "targets": targets, "language": language,
             "language_code": code, "annotation_type": "original-annotations",
             "user_id": _digest("aya-user", str(i % 3)).hex()[:32]}
            for i, (inputs, targets, language, code) in enumerate(AYA)]
    schema = pa.schema([(c, pa.string()) for c in ("inputs", "targets", "language",
                                                   "language_code", "annotation_type",
                                                   "user_id")])
    return pa.Table.from_pylist(rows, schema=schema)


# MLQA train rows per config (SQuAD layout): (context, question, answer). English is SQuAD.
MLQA = {
    "en": [
        ("The school garden was planted in April. By June the pupils had harvested radishes "
         "and lettuce.", "What did the pupils harvest by June?", "radishes and lettuce"),
    ],
    "de": [
        ("Der Regenbogen entsteht, wenn Sonnenlicht in Regentropfen gebrochen wird. Man sieht "
         "ihn nur, wenn die Sonne im Rücken steht.", "Wann sieht man einen Regenbogen?",
         "wenn die Sonne im Rücken steht"),
        ("Bienen bestäuben viele Nutzpflanzen.", "Was bestäuben Bienen?", None),
    ],
}


def mlqa_table(config: str) -> pa.Table:
    rows = []
    for i, (context, question, answer) in enumerate(MLQA[config]):
        start = [context.index(answer)] if answer else []
        rows.append({"context": context, "question": question,
                     "answers": {"answer_start": start, "text": [answer] if answer else []},
                     "id": _digest("mlqa", config, str(i)).hex()[:24]})
    schema = pa.schema([
        ("context", pa.string()), ("question", pa.string()),
        ("answers", pa.struct([("answer_start", pa.list_(pa.int32())),
                               ("text", pa.list_(pa.string()))])),
        ("id", pa.string()),
    ])
    return pa.Table.from_pylist(rows, schema=schema)


# OpenMathInstruct-2 rows: (problem, generated_solution, expected_answer). The first problem
# appears twice, with two solutions, as in the real dataset.
OPENMATH = [
    ("A baker makes 12 loaves a day. How many loaves does she make in a week?",
     "She makes 12 loaves each of 7 days, so 12 * 7 = 84. The answer is \\boxed{84}.", "84"),
    ("A baker makes 12 loaves a day. How many loaves does she make in a week?",
     "A week has 7 days and 7 * 12 = 84, so \\boxed{84}.", "84"),
    ("What is the value of x if 3x + 5 = 20?",
     "Subtract 5 from both sides: 3x = 15. Divide by 3: x = 5. The answer is \\boxed{5}.", "5"),
]


def openmath_table() -> pa.Table:
    rows = [{"problem": p, "generated_solution": s, "expected_answer": a,
             "problem_source": "augmented_gsm8k"} for p, s, a in OPENMATH]
    schema = pa.schema([(c, pa.string()) for c in ("problem", "generated_solution",
                                                   "expected_answer", "problem_source")])
    return pa.Table.from_pylist(rows, schema=schema)


# Everyday-Conversations rows: (topic, subtopic, messages). full_topic is "topic/subtopic".
EVERYDAY = [
    ("Food", "Ordering at a cafe",
     [("user", "Hi! What would you recommend for breakfast?"),
      ("assistant", "A warm croissant with a coffee is a classic choice.")]),
    ("Travel", "Packing for a weekend trip",
     [("user", "What should I pack for two days in the mountains?"),
      ("assistant", "Bring layers, a rain jacket, good shoes and a water bottle.")]),
    ("Food", "Ordering at a cafe",
     [("user", "Hello, is the cafe open on Sundays?"),
      ("assistant", "Many cafes are, but it is best to check their opening hours.")]),
]


def everyday_table() -> pa.Table:
    rows = [{"topic": topic, "subtopic": sub, "full_topic": f"{topic}/{sub}",
             "messages": [{"content": c, "role": r} for r, c in messages]}
            for topic, sub, messages in EVERYDAY]
    schema = pa.schema([
        ("topic", pa.string()), ("subtopic", pa.string()), ("full_topic", pa.string()),
        ("messages", pa.list_(pa.struct([("content", pa.string()), ("role", pa.string())]))),
    ])
    return pa.Table.from_pylist(rows, schema=schema)


def _write(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd")
    log.info("wrote %s (%d rows, %d bytes)", path.relative_to(OUT.parent), table.num_rows,
             path.stat().st_size)


def main() -> None:
    _write(fineweb_edu_table(ENG), OUT / "fineweb-edu" / "eng_Latn.parquet")
    for config, (iso3, script, texts) in FINEWEB2.items():
        _write(fineweb2_table(config, iso3, script, texts), OUT / "fineweb-2" / f"{config}.parquet")
    _write(oasst2_table(), OUT / "oasst2" / "train.parquet")
    for config in XLSUM:
        _write(xlsum_table(config), OUT / "xlsum" / config / "train.parquet")
    for config in BACTRIAN_X:
        _write(bactrian_x_table(config), OUT / "bactrian-x" / f"{config}.parquet")
    _write(aya_table(), OUT / "aya" / "train.parquet")
    for config in MLQA:
        _write(mlqa_table(config), OUT / "mlqa" / f"{config}.parquet")
    _write(openmath_table(), OUT / "openmathinstruct-2" / "train.parquet")
    _write(everyday_table(), OUT / "everyday-conversations" / "train_sft.parquet")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
