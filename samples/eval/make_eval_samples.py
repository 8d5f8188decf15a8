"""Write the shipped evaluation samples under samples/eval/ from the texts below.

All texts are original, written for this project. Each file follows the layout the real set is
distributed in (see pipelines/readers/eval_sets.py): C4 as gzipped JSON lines, MultiEURLEX, Wiki40B,
XL-Sum and XL-WSD as JSON lines, MLQA as SQuAD-style JSON, WikiMatrix as Parquet. None of them
is a Parquet file with a `text` column, so the tiny assets (trained on those) do not change.

Run from the repository root: python samples/eval/make_eval_samples.py
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

OUT = Path(__file__).resolve().parent

EN_LONG_1 = (
    "Bread is one of the oldest prepared foods. People baked flat loaves long before they "
    "learned to write. The simplest bread needs only flour, water and salt. Yeast makes the "
    "dough rise by turning sugars into gas. The gas is trapped by a stretchy network of "
    "gluten. Kneading makes that network stronger. A long, cool rise gives the bread more "
    "flavour. The oven must be hot when the loaf goes in. Steam in the first minutes keeps "
    "the crust soft so the loaf can expand. A hollow sound when you tap the bottom means it "
    "is done. Let it cool before cutting, or the crumb turns gummy."
)
EN_LONG_2 = (
    "Tides are caused mainly by the Moon. Its gravity pulls the ocean into a slight bulge. "
    "A second bulge forms on the far side of the Earth. As the planet turns, a coast passes "
    "through both bulges each day. That is why most shores see two high tides daily. The Sun "
    "also pulls on the oceans, but less strongly. When Sun and Moon line up, the tides are "
    "larger. These are called spring tides. When they pull at right angles, the tides are "
    "smaller. Those are neap tides. The shape of a bay can make the difference between high "
    "and low water enormous."
)
EN_SHORT = "Our shop is closed on Monday. We reopen on Tuesday at nine. Thank you!"
FR_LONG = (
    "Le vélo est un moyen de transport simple et efficace. Il ne consomme pas de carburant. "
    "Il prend peu de place dans la rue. Un entretien régulier suffit à le garder en bon état. "
    "Il faut vérifier la pression des pneus chaque semaine. La chaîne doit rester propre et "
    "huilée. Les freins méritent une attention particulière. Un casque protège en cas de "
    "chute. La nuit, des lumières sont obligatoires. Beaucoup de villes construisent "
    "aujourd'hui des pistes cyclables. Les trajets courts deviennent ainsi plus agréables."
)
FR_SHORT = "La bibliothèque ferme à dix-huit heures. Merci de rendre les livres à temps."
ZH_LONG = (
    "茶起源于中国，已有几千年的历史。最早人们把茶叶当作药物。后来喝茶逐渐成为日常习惯。"
    "绿茶没有经过发酵，保留了清新的味道。红茶经过完全发酵，颜色更深。乌龙茶介于两者之间。"
    "泡茶的水温很重要。绿茶适合用八十度左右的水。红茶可以用刚烧开的水。"
    "好的茶叶可以冲泡好几次。每一次的味道都有些不同。"
    "在中国南方，许多人每天早上都会去茶馆。他们一边喝茶，一边吃点心，一边和朋友聊天。"
    "茶馆里常常很热闹，有人看报纸，有人下棋。老人们喜欢在这里度过整个上午。"
    "年轻人则更喜欢新式的奶茶店，那里的饮料加了牛奶、水果和糖。"
    "不管是传统的茶馆还是新式的奶茶店，喝茶都是人们生活中重要的一部分。"
)
EURLEX_EN = (
    "REGULATION (EU) 2099/1 OF THE EUROPEAN PARLIAMENT AND OF THE COUNCIL on the labelling of "
    "garden tools. Article 1. This Regulation lays down rules on the labelling of garden tools "
    "placed on the market. Article 2. For the purposes of this Regulation, a garden tool means "
    "any hand-held implement used for the cultivation of soil or plants. Article 3. "
    "Manufacturers shall ensure that each tool bears a label. The label shall state the name of "
    "the manufacturer. The label shall state the materials used. The label shall be legible "
    "and durable. Article 4. Member States shall lay down penalties for infringements. Article "
    "5. This Regulation shall enter into force on the twentieth day following its publication."
)
EURLEX_DE = (
    "VERORDNUNG (EU) 2099/1 DES EUROPÄISCHEN PARLAMENTS UND DES RATES über die Kennzeichnung "
    "von Gartengeräten. Artikel 1. Diese Verordnung legt Vorschriften für die Kennzeichnung "
    "von Gartengeräten fest. Artikel 2. Im Sinne dieser Verordnung ist ein Gartengerät jedes "
    "handgeführte Werkzeug zur Bearbeitung von Boden oder Pflanzen. Artikel 3. Die Hersteller "
    "stellen sicher, dass jedes Gerät ein Etikett trägt. Das Etikett nennt den Hersteller. Das "
    "Etikett nennt die verwendeten Materialien. Das Etikett muss lesbar und dauerhaft sein. "
    "Artikel 4. Die Mitgliedstaaten legen Sanktionen fest. Artikel 5. Diese Verordnung tritt "
    "am zwanzigsten Tag nach ihrer Veröffentlichung in Kraft."
)
EURLEX_SHORT_EN = "COMMISSION DECISION of 1 January 2099. Article 1. This Decision is repealed."
WIKI_EN = (
    "\n_START_ARTICLE_\nLighthouse\n_START_SECTION_\nHistory\n_START_PARAGRAPH_\n"
    "A lighthouse is a tower with a bright lamp that guides ships at night. The earliest "
    "lighthouses burned wood or coal on open fires. Later, oil lamps and mirrors made the light "
    "stronger. In the nineteenth century, glass lenses focused the beam over long distances."
    "_NEWLINE_Keepers lived in or near the tower and tended the lamp every night."
    "\n_START_SECTION_\nToday\n_START_PARAGRAPH_\n"
    "Most lighthouses now run automatically. Electric lamps have replaced flames. Satellite "
    "navigation has made many of them less important. Some have become museums. Others still "
    "warn sailors of rocks and shallow water."
)
WIKI_FR = (
    "\n_START_ARTICLE_\nPhare\n_START_PARAGRAPH_\n"
    "Un phare est une tour munie d'une lampe puissante qui guide les navires la nuit. Les "
    "premiers phares brûlaient du bois. On utilisa ensuite des lampes à huile. Des lentilles de "
    "verre permirent de porter la lumière plus loin. Des gardiens entretenaient la lampe."
    "_NEWLINE_Aujourd'hui, la plupart des phares sont automatiques. Certains sont devenus des "
    "musées. D'autres signalent encore les rochers. Ils font partie du paysage côtier."
)


def c4() -> None:
    for lang, texts in {"en": [EN_LONG_1, EN_SHORT, EN_LONG_2], "fr": [FR_SHORT, FR_LONG],
                        "zh": [ZH_LONG]}.items():
        rows = [{"text": t, "timestamp": "2019-04-2%dT10:00:00Z" % i,
                 "url": f"https://example.org/{lang}/{i}"} for i, t in enumerate(texts)]
        path = OUT / "c4" / f"c4-{lang}-validation.tfrecord-00000-of-00001.json.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        # mtime=0: the same bytes on every run.
        with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
            f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode())


def jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def multi_eurlex() -> None:
    jsonl(OUT / "multi_eurlex" / "en" / "test.jsonl", [
        {"celex_id": "32099R0001", "text": EURLEX_EN, "labels": [3, 17]},
        {"celex_id": "32099D0002", "text": EURLEX_SHORT_EN, "labels": [5]}])
    jsonl(OUT / "multi_eurlex" / "de" / "test.jsonl", [
        {"celex_id": "32099R0001", "text": EURLEX_DE, "labels": [3, 17]}])


def wiki40b() -> None:
    jsonl(OUT / "wiki40b" / "en" / "test.jsonl",
          [{"wikidata_id": "Q39715", "text": WIKI_EN, "version_id": "1001"}])
    jsonl(OUT / "wiki40b" / "fr" / "test.jsonl",
          [{"wikidata_id": "Q39715", "text": WIKI_FR, "version_id": "2002"}])


def xlsum() -> None:
    jsonl(OUT / "xlsum" / "english_test.jsonl", [
        {"id": "news-en-1", "url": "https://example.org/news/en/1", "title": "Town opens library",
         "summary": "A new public library has opened in the town centre.",
         "text": "A new public library opened in the town centre on Saturday. It has ten "
                 "thousand books. Children can borrow up to five books at a time. The mayor "
                 "said the building cost less than planned."},
        {"id": "news-en-2", "url": "https://example.org/news/en/2", "title": "Rain delays match",
         "summary": "Heavy rain delayed the final by two hours.",
         "text": "The cup final started two hours late because of heavy rain. Fans waited "
                 "under umbrellas. The home team won by two goals."}])
    jsonl(OUT / "xlsum" / "french_test.jsonl", [
        {"id": "news-fr-1", "url": "https://example.org/news/fr/1", "title": "Un pont rénové",
         "summary": "Le vieux pont de la ville a rouvert après des travaux.",
         "text": "Le vieux pont de la ville a rouvert lundi. Les travaux ont duré un an. Les "
                 "piétons disposent désormais d'un trottoir plus large."}])


def mlqa() -> None:
    def squad(context: str, qas: list[tuple[str, str, str]]) -> dict:
        return {"version": "1.0", "data": [{"title": "sample", "paragraphs": [{
            "context": context,
            "qas": [{"id": i, "question": q, "answers": [{"text": a,
                                                           "answer_start": context.index(a)}]}
                    for i, q, a in qas]}]}]}

    path = OUT / "mlqa"
    path.mkdir(parents=True, exist_ok=True)
    en = ("The old mill stands beside the river. It was built in 1820 to grind wheat. "
          "Today it is a small museum run by volunteers.")
    (path / "test-context-en-question-en.json").write_text(json.dumps(squad(en, [
        ("mlqa-en-1", "When was the mill built?", "1820"),
        ("mlqa-en-2", "Who runs the museum?", "volunteers")]), ensure_ascii=False))
    de = ("Die alte Mühle steht am Fluss. Sie wurde 1820 gebaut, um Weizen zu mahlen. Heute ist "
          "sie ein kleines Museum.")
    (path / "test-context-de-question-de.json").write_text(json.dumps(squad(de, [
        ("mlqa-de-1", "Wann wurde die Mühle gebaut?", "1820")]), ensure_ascii=False))


def xlwsd() -> None:
    jsonl(OUT / "xlwsd" / "en" / "test.jsonl", [
        {"id": "en.d000.s000.t000", "sentence": "She sat on the bank of the river.",
         "target": "bank", "definitions": ["sloping land beside a body of water"]},
        {"id": "en.d000.s001.t000", "sentence": "He opened an account at the bank.",
         "target": "bank", "definitions": ["a financial institution that accepts deposits"]}])
    jsonl(OUT / "xlwsd" / "it" / "test.jsonl", [
        {"id": "it.d000.s000.t000", "sentence": "Il gatto dorme sul divano.",
         "target": "gatto", "definitions": ["piccolo felino domestico"]}])


def wikimatrix() -> None:
    pairs = {
        "en-fr": [("The house is small.", "La maison est petite."),
                  ("I like green tea.", "J'aime le thé vert."),
                  ("The train leaves at noon.", "Le train part à midi.")],
        "en-de": [("The house is small.", "Das Haus ist klein."),
                  ("I like green tea.", "Ich mag grünen Tee.")],
    }
    for config, rows in pairs.items():
        path = OUT / "wikimatrix" / config / "train-00000-of-00001.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        english, other = zip(*rows)
        pq.write_table(pa.table({"english": list(english), "non_english": list(other)}), path)


if __name__ == "__main__":
    c4()
    multi_eurlex()
    wiki40b()
    xlsum()
    mlqa()
    xlwsd()
    wikimatrix()
