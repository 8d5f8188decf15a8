"""A tiny random-weight SaT model folder with an XLM-R-style tokenizer, which wtpsplit loads
offline exactly like a real one (segment-any-text/sat-3l)."""

from __future__ import annotations

from pathlib import Path

import torch


def build_tiny_sat(out_dir: Path, texts: list[str], seed: int = 0) -> Path:
    """Write a tiny random-weight SaT model with an XLM-R-style tokenizer to out_dir.

    The tokenizer is a SentencePiece unigram model trained on `texts` with XLM-R's special ids
    (<s>=0, <pad>=1, </s>=2, <unk>=3, pieces shifted by one, <mask> last). The classifier is
    biased so that, at threshold 0.02, only a few percent of tokens end a "sentence": enough
    to exercise segmentation without splitting every character.
    """
    import sentencepiece as spm
    from transformers import XLMRobertaTokenizerFast
    from wtpsplit.models import SubwordXLMConfig, SubwordXLMForTokenClassification

    out_dir.mkdir(parents=True, exist_ok=True)
    lines = [line for text in texts for line in text.splitlines() if line.strip()]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_prefix=str(out_dir / "sentencepiece.bpe"),
        model_type="unigram", vocab_size=1000, hard_vocab_limit=False, character_coverage=1.0,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, num_threads=1, minloglevel=2,
    )
    # from_pretrained converts the SentencePiece model into XLM-R's fast-tokenizer layout.
    tokenizer = XLMRobertaTokenizerFast.from_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))

    torch.manual_seed(seed)
    config = SubwordXLMConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=514, num_labels=1, lookahead=48,
        lookahead_split_layers=1, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    model = SubwordXLMForTokenClassification(config)
    with torch.no_grad():
        model.classifier.weight.normal_(0.0, 0.3)
        model.classifier.bias.fill_(-6.0)
    model.save_pretrained(str(out_dir))
    return out_dir
