#!/usr/bin/env python3
"""Side-by-side latency of Switchyard's MiniLM encoder and ONNX Runtime, in one run.

Usage (from the repository root):

    python benches/onnx_compare.py [--runs 500] [--skip-cargo]

Needs `pip install torch transformers onnx onnxruntime` (the `tokenizers` package comes
with transformers). The first run exports models/all-MiniLM-L6-v2 (override with
SWITCHYARD_MODEL_DIR) to target/onnx/minilm.onnx with `torch.onnx.export` (opset 17,
dynamic batch/sequence axes) and writes two dynamically quantised copies with
`onnxruntime.quantization.quantize_dynamic` and QInt8 weights: target/onnx/minilm.int8.onnx
(the defaults, per-tensor weight scales) and target/onnx/minilm.int8pc.onnx
(per_channel=True, which is much closer to fp32 on this model at about the same speed);
later runs reuse the files and do not import torch.

What is measured, per length 16/64/128/256 tokens ([CLS]/[SEP] included), batch 1:

* Switchyard: `CLASSIFY_LATENCY=1 cargo bench --bench classify` (500 runs of
  tokenise + embed on one thread after 20 warm-ups; the script parses its
  "N tokens: wall p50 .. ms p99 .. ms" lines). Its precision is whatever
  `Precision::best_available()` picks on this CPU (printed; `CLASSIFY_F32=1` in the
  environment forces F32 and is passed through).
* ONNX Runtime fp32, int8 and int8 per-channel: one `InferenceSession` each with
  intra_op_num_threads = inter_op_num_threads = 1 and sequential execution. Each
  timed run is tokenisation (`tokenizers`, padding and truncation off) + session.run +
  mean pooling + L2 normalisation, i.e. the same work as `Encoder::embed`.

The texts are built exactly like `text_of` in benches/classify.rs (a cycle over 16
single-wordpiece words), and each is checked to tokenise to exactly N tokens.

For context it also prints cosines of mean-pooled, normalised ORT embeddings against
tests/fixtures/minilm_reference.json (the fixture our integration tests compare
against) and between ORT fp32 and each int8 model.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MODEL_DIR = Path(os.environ.get("SWITCHYARD_MODEL_DIR", ROOT / "models/all-MiniLM-L6-v2"))
ONNX_DIR = ROOT / "target/onnx"
FP32_PATH = ONNX_DIR / "minilm.onnx"
INT8_PATH = ONNX_DIR / "minilm.int8.onnx"
INT8_PC_PATH = ONNX_DIR / "minilm.int8pc.onnx"
FIXTURE = ROOT / "tests/fixtures/minilm_reference.json"

LENGTHS = [16, 64, 128, 256]
# Same words and order as benches/classify.rs: each is one wordpiece.
WORDS = [
    "route", "the", "prompt", "to", "a", "cheap", "model", "when", "it", "can", "answer",
    "well", "and", "fast", "for", "users",
]
INPUT_NAMES = ["input_ids", "attention_mask", "token_type_ids"]


def text_of(tokens: int) -> str:
    """Mirror of `text_of` in benches/classify.rs."""
    return " ".join(WORDS[(i * 7 + i // 16) % len(WORDS)] for i in range(tokens - 2))


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


# ---------------------------------------------------------------------------- export


def export_if_missing() -> None:
    ONNX_DIR.mkdir(parents=True, exist_ok=True)
    if not FP32_PATH.exists():
        import torch
        from transformers import AutoModel

        print(f"exporting {MODEL_DIR.name} to {FP32_PATH.relative_to(ROOT)} ...", flush=True)
        model = AutoModel.from_pretrained(str(MODEL_DIR), attn_implementation="eager")
        model.eval()

        class LastHidden(torch.nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, input_ids, attention_mask, token_type_ids):
                return self.inner(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    token_type_ids=token_type_ids,
                ).last_hidden_state

        dummy = tuple(torch.ones(1, 8, dtype=torch.int64) for _ in INPUT_NAMES)
        axes = {0: "batch", 1: "sequence"}
        kwargs = dict(
            input_names=INPUT_NAMES,
            output_names=["last_hidden_state"],
            dynamic_axes={name: axes for name in INPUT_NAMES + ["last_hidden_state"]},
            opset_version=17,
            do_constant_folding=True,
        )
        tmp = FP32_PATH.with_suffix(".partial.onnx")
        with torch.no_grad():
            try:
                # The TorchScript exporter honours dynamic_axes directly.
                torch.onnx.export(LastHidden(model), dummy, str(tmp), dynamo=False, **kwargs)
            except TypeError:
                # Older torch without the `dynamo` switch.
                torch.onnx.export(LastHidden(model), dummy, str(tmp), **kwargs)
        tmp.replace(FP32_PATH)
    for path, per_channel in ((INT8_PATH, False), (INT8_PC_PATH, True)):
        if path.exists():
            continue
        from onnxruntime.quantization import QuantType, quantize_dynamic

        print(f"quantising to {path.relative_to(ROOT)} ...", flush=True)
        tmp = path.with_suffix(".partial.onnx")
        quantize_dynamic(
            str(FP32_PATH), str(tmp), weight_type=QuantType.QInt8, per_channel=per_channel
        )
        tmp.replace(path)


# ------------------------------------------------------------------------------- ORT


def load_tokenizer():
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(MODEL_DIR / "tokenizer.json"))
    # tokenizer.json ships with fixed padding to 128 and truncation at 128: turn both off.
    tok.no_padding()
    tok.no_truncation()
    return tok


def make_session(path: Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def ort_embed_ids(sess, ids, type_ids) -> np.ndarray:
    ids = np.asarray(ids, dtype=np.int64)[None, :]
    mask = np.ones_like(ids)
    types = np.asarray(type_ids, dtype=np.int64)[None, :]
    (hidden,) = sess.run(
        None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
    )
    pooled = hidden[0].mean(axis=0)  # batch 1, no padding: every position counts
    return pooled / np.linalg.norm(pooled)


def ort_embed(sess, tok, text: str) -> np.ndarray:
    enc = tok.encode(text)
    return ort_embed_ids(sess, enc.ids, enc.type_ids)


def ort_latency(sess, tok, texts: dict[int, str], runs: int, warmup: int) -> dict:
    out = {}
    for n, text in texts.items():
        for _ in range(warmup):
            ort_embed(sess, tok, text)
        wall, cpu = [], []
        for _ in range(runs):
            c0, t0 = time.thread_time(), time.perf_counter()
            ort_embed(sess, tok, text)
            wall.append((time.perf_counter() - t0) * 1e3)
            cpu.append((time.thread_time() - c0) * 1e3)
        wall.sort()
        out[n] = (percentile(wall, 0.5), percentile(wall, 0.99), sum(cpu) / len(cpu))
    return out


def percentile(sorted_vals, p: float) -> float:
    # Same nearest-rank rule as benches/classify.rs.
    return sorted_vals[int(round((len(sorted_vals) - 1) * p))]


# ------------------------------------------------------------------------ Switchyard

LINE = re.compile(
    r"^\s*(\d+) tokens: wall p50 ([\d.]+) ms p99 ([\d.]+) ms(?: \| cpu mean ([\d.]+) ms)?"
)


def switchyard_latency() -> tuple[dict, str, str]:
    env = dict(os.environ, CLASSIFY_LATENCY="1")
    cmd = ["cargo", "bench", "--bench", "classify"]
    print(f"running: CLASSIFY_LATENCY=1 {' '.join(cmd)}", flush=True)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"cargo bench failed ({proc.returncode})")
    res, precision = {}, "?"
    for line in proc.stdout.splitlines():
        if line.startswith("precision "):
            precision = line.split(None, 1)[1]
        m = LINE.match(line)
        if m:
            cpu = float(m.group(4)) if m.group(4) else float("nan")
            res[int(m.group(1))] = (float(m.group(2)), float(m.group(3)), cpu)
    missing = [n for n in LENGTHS if n not in res]
    if missing:
        sys.stderr.write(proc.stdout)
        raise SystemExit(f"no p50/p99 line for {missing} tokens in cargo bench output")
    return res, precision, proc.stdout


# ------------------------------------------------------------------------- fixture


def fixture_cosines(tok, sessions: dict) -> None:
    if not FIXTURE.exists():
        return
    fx = json.loads(FIXTURE.read_text())
    max_len = fx["max_seq_length"]
    worst_fx = {name: 1.0 for name in sessions}
    worst_fp32 = {name: 1.0 for name in sessions if name != "fp32"}
    for item in fx["items"]:
        enc = tok.encode(item["text"])
        ids, types = list(enc.ids), list(enc.type_ids)
        if len(ids) > max_len:  # sentence-transformers truncation: head + [SEP]
            ids = ids[: max_len - 1] + ids[-1:]
            types = types[:max_len]
        assert len(ids) == item["tokens"], (item["text"][:40], len(ids), item["tokens"])
        ref = np.asarray(item["embedding"], dtype=np.float64)
        ref /= np.linalg.norm(ref)
        embs = {name: ort_embed_ids(s, ids, types) for name, s in sessions.items()}
        for name, e in embs.items():
            worst_fx[name] = min(worst_fx[name], float(e @ ref))
            if name in worst_fp32:
                worst_fp32[name] = min(worst_fp32[name], float(e @ embs["fp32"]))
    n = len(fx["items"])
    print(f"mean-pooled, normalised embeddings, worst cosine over the {n} fixture items:")
    for name, c in worst_fx.items():
        print(f"  ORT {name:<8} vs fixture: {c:.6f}")
    for name, c in worst_fp32.items():
        print(f"  ORT {name:<8} vs ORT fp32: {c:.6f}")
    print("  (Switchyard vs fixture: tests/classify.rs asserts >= 0.999 int8, >= 0.99999 f32)")


# ---------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=500, help="timed runs per length (ORT)")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--skip-cargo", action="store_true", help="ORT side only")
    args = ap.parse_args()

    export_if_missing()
    import onnxruntime as ort

    tok = load_tokenizer()
    texts = {}
    for n in LENGTHS:
        texts[n] = text_of(n)
        got = len(tok.encode(texts[n]).ids)
        assert got == n, f"text for {n} tokens tokenises to {got}"

    print(f"python {platform.python_version()}, onnxruntime {ort.__version__}, "
          f"numpy {np.__version__}, cpus {os.cpu_count()}")
    print(f"loadavg at start: {loadavg()}", flush=True)

    sy, precision = None, None
    if not args.skip_cargo:
        sy, precision, _ = switchyard_latency()
        print(f"loadavg after cargo bench: {loadavg()}", flush=True)

    sessions = {
        "fp32": make_session(FP32_PATH),
        "int8": make_session(INT8_PATH),
        "int8-pc": make_session(INT8_PC_PATH),
    }
    ort_res = {}
    for name, sess in sessions.items():
        print(f"ORT {name}: {args.runs} runs per length ...", flush=True)
        ort_res[name] = ort_latency(sess, tok, texts, args.runs, args.warmup)
    print(f"loadavg after ORT: {loadavg()}\n")

    def cell(r):
        return f"{r[0]:6.2f} /{r[1]:6.2f}"

    names = list(sessions)
    sy_head = f"switchyard {precision}" if sy else "switchyard (skipped)"
    print("ms per text, p50 / p99; batch 1, one thread, tokenisation + pooling included")
    w = max(16, len(sy_head))
    print(f"{'tokens':>6} | {sy_head:>{w}} | "
          + " | ".join(f"{'ORT ' + nm:>15}" for nm in names)
          + " | ORT/SY p50: " + " ".join(f"{nm:>7}" for nm in names))
    print("-" * 118)
    for n in LENGTHS:
        row = f"{n:>6} | {cell(sy[n]) if sy else '-':>{w}} | "
        row += " | ".join(f"{cell(ort_res[nm][n]):>15}" for nm in names)
        if sy:
            row += " |             " + " ".join(
                f"{ort_res[nm][n][0] / sy[n][0]:>7.2f}" for nm in names
            )
        print(row)
    print("\nmean CPU time of the measuring thread per run, ms (less sensitive to load):")
    print(f"{'tokens':>6} | {'switchyard':>10} | " + " | ".join(f"{'ORT ' + nm:>12}" for nm in names))
    for n in LENGTHS:
        s = f"{sy[n][2]:.2f}" if sy else "-"
        print(f"{n:>6} | {s:>10} | " + " | ".join(f"{ort_res[nm][n][2]:>12.2f}" for nm in names))
    print()
    fixture_cosines(tok, sessions)


if __name__ == "__main__":
    main()
