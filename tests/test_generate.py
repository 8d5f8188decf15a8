import zlib

import numpy as np
import torch

from mimir_model.diffusion import NoiseSchedule, SamplerConfig
from mimir_model.generate import generate, is_end_of_text, predict_next_embeddings
from mimir_model.normalizer import RobustNormalizer
from mimir_model.two_tower import TwoTowerLCM, preset

DIM = 8
EOT = "End of text."
VOCAB = ["a", "b", "c", "d", EOT]
NEXT = {"a": "b", "b": "c", "c": "d", "d": EOT}


def embed(sentences: list[str], lang: str) -> np.ndarray:
    """Deterministic fake SONAR: a fixed random vector per sentence (language ignored)."""
    return np.stack([np.random.default_rng(zlib.crc32(s.encode())).standard_normal(DIM) * 2 + 1
                     for s in sentences]).astype(np.float32)


def decode(embeddings: np.ndarray, lang: str) -> list[str]:
    vocab = embed(VOCAB, "eng_Latn")
    dist = ((embeddings[:, None] - vocab[None]) ** 2).sum(-1)
    return [f"{VOCAB[i]}@{lang}" for i in dist.argmin(1)]


NORM = RobustNormalizer().fit([embed(VOCAB + [f"x{i}" for i in range(20)], "eng_Latn")])


class ChainModel(torch.nn.Module):
    """Predicts (cond and uncond alike) the embedding of NEXT[last context sentence]."""

    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # gives generate() a device
        self.vocab = NORM.normalize(torch.from_numpy(embed(VOCAB, "eng_Latn")))
        self.next = torch.stack([self.vocab[VOCAB.index(NEXT.get(s, EOT))] for s in VOCAB])

    def encode_context(self, context):
        return context

    def predict_next(self, ctx_out, lengths, x_t, t, drop):
        last = ctx_out[torch.arange(len(lengths)), lengths - 1]
        nearest = torch.cdist(last, self.vocab).argmin(1)
        return self.next[nearest]


def test_is_end_of_text():
    end = np.array([1.0, 0.0])
    gen = np.array([[2.0, 0.0], [1.0, 0.5], [1.0, 0.48], [0.0, 1.0]])
    # cosines 1, 0.894, 0.9016, 0
    assert is_end_of_text(gen, end, 0.90).tolist() == [True, False, True, False]


def test_generation_follows_context_and_stops_at_end_of_text():
    """The LCM reference's stop rule: the first generated sentence never stops generation
    (min_gen_len=1) and the sentence that stops it stays in the output (trim_hypotheses=False)."""
    model = ChainModel().eval()
    end = f"{EOT}@deu_Latn"
    out = generate(model, NoiseSchedule(), SamplerConfig(), NORM, embed, decode,
                   [["a"], ["c"], ["d"], ["x1", "b"]], "fra_Latn", "deu_Latn",
                   generator=torch.Generator().manual_seed(0))
    # "d" is followed by End of text. at once: it does not stop there; the next one does.
    assert out == [["b@deu_Latn", "c@deu_Latn", "d@deu_Latn", end], ["d@deu_Latn", end],
                   [end, end], ["c@deu_Latn", "d@deu_Latn", end]]
    out = generate(model, NoiseSchedule(), SamplerConfig(), NORM, embed, decode, [["a"], ["d"]],
                   "eng_Latn", "eng_Latn", max_sentences=2)
    assert out == [["b@eng_Latn", "c@eng_Latn"], [f"{EOT}@eng_Latn", f"{EOT}@eng_Latn"]]
    # Trimmed, and allowed to stop at the first sentence: our former rule.
    out = generate(model, NoiseSchedule(), SamplerConfig(), NORM, embed, decode,
                   [["a"], ["d"]], "eng_Latn", "eng_Latn", min_gen_len=0, trim_end_of_text=True)
    assert out == [["b@eng_Latn", "c@eng_Latn", "d@eng_Latn"], []]


def test_a_model_that_always_ends_yields_two_sentences_as_the_reference():
    class AlwaysEnd(ChainModel):
        def predict_next(self, ctx_out, lengths, x_t, t, drop):
            return self.vocab[VOCAB.index(EOT)].expand(len(lengths), -1)

    out = generate(AlwaysEnd().eval(), NoiseSchedule(), SamplerConfig(steps=4), NORM, embed,
                   decode, [["a"], ["b", "c"]], "eng_Latn", "eng_Latn")
    assert [len(o) for o in out] == [2, 2]


def test_predict_next_embeddings():
    model = ChainModel().eval()
    pred = predict_next_embeddings(model, NoiseSchedule(), SamplerConfig(), NORM,
                                   [embed(["a"], "x"), embed(["x3", "c"], "x")])
    assert np.allclose(pred, embed(["b", "d"], "x"), atol=1e-3)


def test_generate_with_tiny_model_runs_to_max_sentences():
    torch.manual_seed(0)
    model = TwoTowerLCM(preset("tiny", sonar_dim=DIM, model_dim=32)).eval()
    calls = []

    def counting_decode(e: np.ndarray, lang: str) -> list[str]:
        calls.append((e.shape, lang))
        return [f"s{i}" for i in range(len(e))]

    out = generate(model, NoiseSchedule(), SamplerConfig(steps=5), NORM, embed, counting_decode,
                   [["a", "b"], ["c"]], "eng_Latn", "spa_Latn", max_sentences=3, stop_cosine=1.01,
                   generator=torch.Generator().manual_seed(0))
    assert out == [["s0", "s1", "s2"], ["s3", "s4", "s5"]]
    assert calls == [((6, DIM), "spa_Latn")]
