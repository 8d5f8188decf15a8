"""Golden SONAR fixtures from the reference stack (sonar-space 0.5.0 on fairseq2 0.8.1).

Runs ONLY in a separate reference venv, never in the project's: fairseq2n 0.8.1 needs exactly
torch 2.9.1. Registry only, CPU is enough (sizes seen on Debian 12, Python 3.11):

    python3 -m venv /work/refvenv
    /work/refvenv/bin/pip install torch==2.9.1          # ~4 GB download, 6.7 GB installed
    /work/refvenv/bin/pip install fairseq2==0.8.1 sonar-space==0.5.0 torchaudio==2.9.1 \
        sentencepiece                                    # ~1 min
    apt-get install -y libsndfile1                       # fairseq2n needs it
    /work/refvenv/bin/python tests/data/sonar_golden/make_golden.py   # ~1 min on 2 CPUs

It writes, next to itself (about 2 MB; same inputs -> same outputs):
  sentencepiece.model      NLLB-style unigram model trained here on SENTENCES (+ bytes)
  sonar_text_encoder.pt    random-weight encoder, official format {"model": state_dict}
  sonar_text_decoder.pt    random-weight decoder, official format
  golden.json              per sentence: text, lang, token ids, truncated flag; per target
                           language and search (greedy = beam 1, beam = sonar-space's default
                           beam 5): decoded token ids and texts
  embeddings.npy           float32 [N, d] sentence embeddings

The models are built by sonar-space's own factories (the "basic" architecture at small dims:
d 96, 6 heads, ffn 192, 2 layers; max_seq_len 512 as published), saved, and loaded back
through fairseq2 asset cards (checkpoint/tokenizer file:// URIs in FAIRSEQ2_USER_ASSET_DIR),
so the files go through sonar-space's checkpoint loader exactly as the official ones do.
Embeddings come from TextToEmbeddingModelPipeline.predict, texts from
EmbeddingToTextModelPipeline's generator with its defaults (and beam_size=1 for greedy), run
through the same SequenceToTextConverter and batches as its predict, so ids come with texts.
"""

from __future__ import annotations

import io
import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import sentencepiece as spm
import torch

log = logging.getLogger("make_golden")

HERE = Path(__file__).resolve().parent
MODEL_DIM, HEADS, FFN, LAYERS = 96, 6, 192, 2
SEED = 0
TARGET_LANGS = ["eng_Latn", "fra_Latn", "zho_Hant"]

# (lang, text): 40 sentences in 13 languages; "" and a text longer than max_seq_len included.
SENTENCES: list[tuple[str, str]] = [
    ("eng_Latn", "The quick brown fox jumps over the lazy dog."),
    ("eng_Latn", "It was a sunny day in the park."),
    ("eng_Latn", "Children learn to read by reading books with their parents every evening."),
    ("eng_Latn", "End of text."),
    ("eng_Latn", ""),
    ("eng_Latn", "Hi!"),
    ("fra_Latn", "Le renard brun saute par-dessus le chien paresseux."),
    ("fra_Latn", "Il faisait beau dans le parc."),
    ("fra_Latn", "Les enfants apprennent à lire avec leurs parents chaque soir."),
    ("fra_Latn", "Où est la gare ?"),
    ("deu_Latn", "Der schnelle braune Fuchs springt über den faulen Hund."),
    ("deu_Latn", "Es war ein sonniger Tag."),
    ("deu_Latn", "Straßenbahnhaltestelle und Größenordnung."),
    ("spa_Latn", "El rápido zorro marrón salta sobre el perro perezoso."),
    ("spa_Latn", "¿Hacía sol en el parque?"),
    ("spa_Latn", "Los niños aprenden a leer con sus padres cada noche."),
    ("rus_Cyrl", "Быстрая коричневая лиса прыгает через ленивую собаку."),
    ("rus_Cyrl", "Был солнечный день."),
    ("rus_Cyrl", "Дети учатся читать вместе с родителями каждый вечер."),
    ("arb_Arab", "الثعلب البني السريع يقفز فوق الكلب الكسول."),
    ("arb_Arab", "كان يوما مشمسا في الحديقة."),
    ("arb_Arab", "يتعلم الأطفال القراءة مع والديهم كل مساء."),
    ("hin_Deva", "तेज़ भूरी लोमड़ी आलसी कुत्ते के ऊपर कूदती है।"),
    ("hin_Deva", "पार्क में धूप वाला दिन था।"),
    ("hin_Deva", "बच्चे हर शाम अपने माता-पिता के साथ पढ़ना सीखते हैं।"),
    ("zho_Hans", "敏捷的棕色狐狸跳过了懒狗。"),
    ("zho_Hans", "公园里阳光明媚。"),
    ("zho_Hans", "孩子们每天晚上和父母一起学习阅读。"),
    ("zho_Hant", "敏捷的棕色狐狸跳過了懶狗。"),
    ("zho_Hant", "公園裡陽光明媚。"),
    ("zho_Hant", "孩子們每天晚上和父母一起學習閱讀。"),
    ("jpn_Jpan", "素早い茶色の狐が怠け者の犬を飛び越える。"),
    ("jpn_Jpan", "公園は晴れていました。"),
    ("ell_Grek", "Η γρήγορη καφέ αλεπού πηδάει πάνω από τον τεμπέλη σκύλο."),
    ("ell_Grek", "Ήταν μια ηλιόλουστη μέρα."),
    ("tur_Latn", "Hızlı kahverengi tilki tembel köpeğin üzerinden atlar."),
    ("tur_Latn", "Parkta güneşli bir gündü."),
    ("kor_Hang", "빠른 갈색 여우가 게으른 개를 뛰어넘는다."),
    ("eng_Latn", "Emoji and digits: 🦊 3.14159, 2024-06-01 😀 ©"),
    ("deu_Latn", " ".join(["Dies ist ein sehr langer Satz über Füchse, Hunde und Parks,"
                       f" Nummer {i}." for i in range(60)])),
]


def train_tokenizer(path: Path) -> None:
    """Unigram model with NLLB's special ids (<unk> 0, <s> 1, </s> 2, no pad) and bytes."""
    spm.set_random_generator_seed(SEED)
    model = io.BytesIO()
    lines = [text for _, text in SENTENCES if text] * 3
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, model_type="unigram",
        vocab_size=800, hard_vocab_limit=False, character_coverage=1.0, byte_fallback=True,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, num_threads=1, minloglevel=2)
    path.write_bytes(model.getvalue())


def write_cards(card_dir: Path, vocab_size: int) -> None:
    """Asset cards inheriting the published ones (languages, families, arch) with our files."""
    common = {"model_dim": MODEL_DIM, "ffn_inner_dim": FFN, "num_encoder_layers": LAYERS,
              "num_decoder_layers": LAYERS, "num_encoder_attn_heads": HEADS,
              "num_decoder_attn_heads": HEADS,
              "vocab_info": {"size": vocab_size, "unk_idx": 1, "bos_idx": 2, "eos_idx": 3,
                             "pad_idx": 1}}
    tokenizer = (HERE / "sentencepiece.model").as_uri()
    for part in ("encoder", "decoder"):
        card = {"name": f"golden_sonar_{part}", "base": f"text_sonar_basic_{part}",
                "checkpoint": (HERE / f"sonar_text_{part}.pt").as_uri(),
                "tokenizer": tokenizer, "model_config": {"_set_": common}}
        (card_dir / f"golden_{part}.yaml").write_text(json.dumps(card))  # JSON is YAML


def build_checkpoints() -> None:
    """Random weights from sonar-space's factories, saved in the official format."""
    from sonar.models.sonar_text import get_sonar_text_decoder_hub, get_sonar_text_encoder_hub
    from sonar.models.sonar_text.factory import (_create_sonar_text_decoder_model,
                                                 _create_sonar_text_encoder_model)

    configs = {"encoder": get_sonar_text_encoder_hub().get_model_config("golden_sonar_encoder"),
               "decoder": get_sonar_text_decoder_hub().get_model_config("golden_sonar_decoder")}
    torch.manual_seed(SEED)
    encoder = _create_sonar_text_encoder_model(configs["encoder"])
    decoder = _create_sonar_text_decoder_model(configs["decoder"])
    # With fairseq2's default init a tied random decoder repeats its last token forever; wide
    # layer weights and a likelier </s> (id 3) give varied outputs of varied lengths.
    with torch.no_grad():
        for name, p in decoder.named_parameters():
            if p.dim() == 2 and "embed" not in name and "final_proj" not in name:
                p.normal_(0, 0.5)
        decoder.decoder_frontend.embed.weight[3] *= 2.0
        for p in encoder.parameters():  # non-trivial norms and biases too
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
    torch.save({"model": encoder.state_dict()}, HERE / "sonar_text_encoder.pt")
    # final_proj.weight shares the embedding's storage, so it is stored once.
    torch.save({"model": decoder.state_dict()}, HERE / "sonar_text_decoder.pt")
    # What the weights do not tell, for Mimir's loader (mimir_model/sonar/checkpoint.py).
    for part in ("encoder", "decoder"):
        (HERE / f"sonar_text_{part}.json").write_text(
            json.dumps({"num_heads": HEADS, "max_seq_len": 512}) + "\n")


def decode(pipeline, embeddings: torch.Tensor, target_lang: str, beam_size: int | None
           ) -> tuple[list[list[int]], list[str]]:
    """EmbeddingToTextModelPipeline.predict's steps (same generator, converter and batches of
    5), keeping the token ids as well: the best hypothesis without its prompt, and its text."""
    from fairseq2.generation.beam_search.generator import BeamSearchSeq2SeqGenerator
    from fairseq2.nn import BatchLayout
    from sonar.inference_pipelines.utils import SequenceToTextConverter

    kwargs = {} if beam_size is None else {"beam_size": beam_size}
    generator = BeamSearchSeq2SeqGenerator(pipeline.model, pipeline.tokenizer.vocab_info,
                                           **kwargs)
    converter = SequenceToTextConverter(generator, pipeline.tokenizer, task="translation",
                                        target_lang=target_lang, mode="target")
    ids: list[list[int]] = []
    texts: list[str] = []
    for start in range(0, len(embeddings), 5):
        seqs = embeddings[start : start + 5]
        batch_texts, output = converter.batch_convert(seqs, BatchLayout.of(seqs))
        ids += [hyps[0].seq.tolist() for hyps in output.hypotheses]
        texts += batch_texts
    return ids, texts


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)  # results do not depend on it; shared machines run faster
    train_tokenizer(HERE / "sentencepiece.model")
    vocab_size = 1 + spm.SentencePieceProcessor(
        model_file=str(HERE / "sentencepiece.model")).get_piece_size() + 202 + 3
    card_dir = Path(tempfile.mkdtemp(prefix="sonar_golden_cards_"))
    write_cards(card_dir, vocab_size)
    os.environ["FAIRSEQ2_USER_ASSET_DIR"] = str(card_dir)

    from fairseq2 import init_fairseq2

    init_fairseq2()
    build_checkpoints()

    from fairseq2.data.tokenizers import load_tokenizer
    from sonar.inference_pipelines.text import (EmbeddingToTextModelPipeline,
                                                TextToEmbeddingModelPipeline)

    t2v = TextToEmbeddingModelPipeline("golden_sonar_encoder", "golden_sonar_encoder")
    v2t = EmbeddingToTextModelPipeline("golden_sonar_decoder", "golden_sonar_decoder")
    tokenizer = load_tokenizer("golden_sonar_encoder")
    max_len = t2v.model.encoder_frontend.pos_encoder.max_seq_len  # 512 + pad_idx + 1

    records = []
    embeddings = torch.empty(len(SENTENCES), MODEL_DIM)
    for lang in sorted({lang for lang, _ in SENTENCES}):  # predict takes one language a call
        rows = [i for i, (l, _) in enumerate(SENTENCES) if l == lang]
        embeddings[rows] = t2v.predict([SENTENCES[i][1] for i in rows], source_lang=lang)
    for i, (lang, text) in enumerate(SENTENCES):
        ids = tokenizer.create_encoder(lang=lang)(text).tolist()
        records.append({"lang": lang, "text": text, "ids": ids[:max_len],
                        "truncated": len(ids) > max_len})

    decodes = {}
    for target in TARGET_LANGS:
        for search, beam in (("greedy", 1), ("beam", None)):
            ids, texts = decode(v2t, embeddings, target, beam)
            log.info("%s %s: %d tokens in all", target, search, sum(map(len, ids)))
            decodes[f"{target}/{search}"] = {"ids": ids, "texts": texts}

    np.save(HERE / "embeddings.npy", embeddings.numpy().astype(np.float32))
    golden = {
        "reference": {"sonar-space": "0.5.0", "fairseq2": "0.8.1", "torch": torch.__version__},
        "config": {"model_dim": MODEL_DIM, "num_heads": HEADS, "ffn_dim": FFN,
                   "num_layers": LAYERS, "vocab_size": vocab_size, "encoder_max_len": max_len},
        "sentences": records,
        "decodes": decodes,
    }
    (HERE / "golden.json").write_text(json.dumps(golden, ensure_ascii=False,
                                                       separators=(",", ":")) + "\n")
    log.info("wrote %d sentences, %d decodes to %s", len(records), len(decodes), HERE)


if __name__ == "__main__":
    main()
