#!/usr/bin/env python3
"""Build the intent-classifier training set and its held-out evaluation splits.

Standard library only, deterministic for a given --seed. Reads the shared data folder (never
copied into the repo) plus our own hand-written examples, and writes JSONL files of
{"text", "label", "source"} to --out:

  default.train.jsonl / default.test.jsonl   the default LLM task-type taxonomy, split 85/15 per
                                             class (stratified by source inside each class)
  default.long.jsonl                         the test rows whose ORIGINAL prompt is longer than
                                             --long-chars, with the full, untruncated text (to
                                             measure what truncating to N tokens costs)
  banking77.train.jsonl / banking77.test.jsonl   shared banking77 train, 20% held out per label
  clinc150.train.jsonl / clinc150.test.jsonl     in-scope rows of the shared clinc150 train /
                                                 the whole shared clinc150 val (incl. `oos`)
  manifest.json                              label order, counts, and the options used

The taxonomy, the source -> class mapping and the reasons behind it are documented in
training/intents/taxonomy.md; keep the two in sync.

Usage, from the crate root:

    python3 training/intent_data.py [--shared ../shared/data] [--out target/intent-data]
        [--extra training/intents/extra.jsonl] [--seed 13]

Relative default paths are resolved against the crate root, so the script also works when
started from elsewhere; explicit relative paths are taken relative to the working directory.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

LABELS = ["code", "math", "reasoning", "knowledge", "writing", "summarization", "chitchat", "other"]

# --- routing files: task -> class ---------------------------------------------------------------
# llmrouter `mmlu` is handled by llmrouter_mmlu_label() below: in this file it is mostly RACE-style
# reading comprehension (a passage followed by a question about it), not MMLU subject questions.
LLMROUTER_MAP = {
    "mbpp": "code",
    "human_eval": "code",
    "math": "math",
    "gsm8k": "math",
    "agentverse-mgsm": "math",
    "agentverse-logicgrid": "reasoning",
    "gpqa": "reasoning",
    "commonsense_qa": "reasoning",
    "arc_challenge": "reasoning",
    "openbook_qa": "reasoning",
    "trivia_qa": "knowledge",
    "natural_qa": "knowledge",
    "commongen": "writing",
}
MMLU_PASSAGE_MIN_CHARS = 400  # llmrouter `mmlu` rows at least this long carry a reading passage

MMLU_PRO_MAP = {
    "math": "math",
    # computational multiple choice
    "physics": "reasoning",
    "chemistry": "reasoning",
    "engineering": "reasoning",
    "business": "reasoning",  # ~90% are finance/accounting calculations
    # subject knowledge
    "biology": "knowledge",
    "health": "knowledge",
    "psychology": "knowledge",
    "history": "knowledge",
    "law": "knowledge",
    "economics": "knowledge",
    "philosophy": "knowledge",
    "other": "knowledge",
    "computer science": "knowledge",
}

# --- CLINC150 intents -> class ------------------------------------------------------------------
CLINC_CHITCHAT = {
    "greeting", "goodbye", "thank_you", "tell_joke", "fun_fact", "meaning_of_life",
    "how_old_are_you", "what_is_your_name", "who_made_you", "are_you_a_bot",
    "what_are_your_hobbies", "do_you_have_pets", "where_are_you_from", "what_can_i_ask_you",
    "who_do_you_work_for", "user_name", "change_ai_name", "change_user_name",
    "yes", "no", "maybe", "cancel", "repeat",
}
# General how-to / factual questions an LLM answers from its own knowledge.
CLINC_KNOWLEDGE = {
    "definition", "recipe", "ingredients_list", "ingredient_substitution", "cook_time",
    "food_last", "nutrition_info", "calories", "jump_start", "oil_change_how", "plug_type",
    "international_visa", "vaccines", "improve_credit_score",
}
CLINC_MATH = {"calculator"}
# Left out of the default set: `oos` is mostly open-domain trivia ("when did camus die") that an LLM
# router should call knowledge, and the rest straddle two of our classes.
CLINC_EXCLUDED = {
    "oos", "translate", "spelling", "measurement_conversion", "travel_suggestion",
    "meal_suggestion", "restaurant_suggestion",
}
# Every other CLINC intent (device control, personal accounts, bookings, live look-ups) -> other.

# --- caps ---------------------------------------------------------------------------------------
SOURCE_CAP_OVERRIDES = {
    "llmrouter:mmlu(passage)": 250,  # keep our own summarization examples the majority
}
CLINC_CAPS = {"chitchat": 40, "knowledge": 15, "math": 15, "other": 8}  # per intent
BANKING77_CAP = 400  # in total, stratified over its 77 labels


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shared", type=Path, default=None,
                   help="shared data folder (default: ../shared/data from the crate root)")
    p.add_argument("--extra", type=Path, default=None,
                   help="hand-written examples (default: training/intents/extra.jsonl)")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default: target/intent-data under the crate root)")
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--source-cap", type=int, default=400,
                   help="max rows taken from one routing source task (default 400)")
    p.add_argument("--class-cap", type=int, default=1500,
                   help="max rows per class; larger classes are trimmed by water-filling "
                        "over their sources, so small sources keep all their rows (default 1500)")
    p.add_argument("--max-chars", type=int, default=1500,
                   help="truncate prompts to about this many characters (default 1500)")
    p.add_argument("--long-chars", type=int, default=1200,
                   help="default.long.jsonl keeps test rows whose original text is longer")
    p.add_argument("--test-frac", type=float, default=0.15)
    p.add_argument("--banking-test-frac", type=float, default=0.20)
    args = p.parse_args(argv)
    args.shared = args.shared or ROOT / ".." / "shared" / "data"
    args.extra = args.extra or ROOT / "training" / "intents" / "extra.jsonl"
    args.out = args.out or ROOT / "target" / "intent-data"
    return args


# --- helpers ------------------------------------------------------------------------------------

def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def rng_for(seed: int, *parts: object) -> random.Random:
    # str seeds are hashed with SHA-512 by `random`, so this is stable across runs and platforms.
    return random.Random(":".join([str(seed), *map(str, parts)]))


def norm_key(text: str) -> str:
    return " ".join(text.lower().split())


def truncate(text: str, max_chars: int) -> str:
    """The first ~max_chars characters, cut at a whitespace boundary when one is close."""
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    ws = max(cut.rfind(" "), cut.rfind("\n"))
    if ws >= max_chars - 100:
        cut = cut[:ws]
    return cut.rstrip()


def sample(rows: list[dict], n: int, rng: random.Random) -> list[dict]:
    if len(rows) <= n:
        return list(rows)
    idx = list(range(len(rows)))
    rng.shuffle(idx)
    return [rows[i] for i in sorted(idx[:n])]


def stratified_sample(rows: list[dict], key: str, n: int, rng: random.Random) -> list[dict]:
    """n rows, taking one from each `key` group in turn (groups shuffled), so labels stay even."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[r[key]].append(r)
    queues = []
    for g in sorted(groups):
        items = list(groups[g])
        rng.shuffle(items)
        queues.append(items)
    out: list[dict] = []
    while len(out) < n and any(queues):
        for q in queues:
            if q and len(out) < n:
                out.append(q.pop())
    return out


def water_fill(sizes: dict[str, int], cap: int) -> dict[str, int]:
    """Per-source quotas summing to <= cap: every source gets min(size, level) for the largest
    level that fits, then leftover slots go to the largest sources one by one."""
    total = sum(sizes.values())
    if total <= cap:
        return dict(sizes)
    lo, hi = 0, max(sizes.values())
    while lo < hi:  # largest level with sum(min(size, level)) <= cap
        mid = (lo + hi + 1) // 2
        if sum(min(s, mid) for s in sizes.values()) <= cap:
            lo = mid
        else:
            hi = mid - 1
    quota = {k: min(s, lo) for k, s in sizes.items()}
    left = cap - sum(quota.values())
    for k in sorted(sizes, key=lambda k: (-sizes[k], k)):
        if left == 0:
            break
        if quota[k] < sizes[k]:
            quota[k] += 1
            left -= 1
    return quota


# --- the default taxonomy -----------------------------------------------------------------------

def llmrouter_mmlu_label(prompt: str) -> tuple[str, str]:
    if len(prompt) >= MMLU_PASSAGE_MIN_CHARS:
        return "summarization", "llmrouter:mmlu(passage)"
    return "reasoning", "llmrouter:mmlu(short)"


def collect_default(args: argparse.Namespace) -> tuple[list[dict], dict]:
    """All candidate rows {text, full, label, source}, after per-source caps and dedup."""
    stats: dict = {"dropped_conflicts": 0, "dropped_duplicates": 0}
    by_source: dict[str, list[dict]] = defaultdict(list)
    source_label: dict[str, str] = {}

    def put(source: str, label: str, text: str) -> None:
        assert label in LABELS, label
        by_source[source].append({"full": text, "label": label, "source": source})
        source_label[source] = label

    # routing prompts
    for r in read_jsonl(args.shared / "routing" / "llmrouter.train.jsonl"):
        task = r["task"]
        if task == "mmlu":
            label, source = llmrouter_mmlu_label(r["prompt"])
        elif task in LLMROUTER_MAP:
            label, source = LLMROUTER_MAP[task], f"llmrouter:{task}"
        else:
            sys.exit(f"llmrouter task {task!r} has no mapping; add it to LLMROUTER_MAP")
        put(source, label, r["prompt"])
    for r in read_jsonl(args.shared / "routing" / "mmlu-pro.train.jsonl"):
        task = r["task"]
        if task not in MMLU_PRO_MAP:
            sys.exit(f"mmlu-pro category {task!r} has no mapping; add it to MMLU_PRO_MAP")
        put(f"mmlu-pro:{task}", MMLU_PRO_MAP[task], r["prompt"])

    # CLINC150 (train file only; its val file is the clinc150 benchmark's test split)
    clinc_caps: dict[str, int] = {}
    for r in read_jsonl(args.shared / "intent" / "clinc150.train.jsonl"):
        intent = r["label"]
        if intent in CLINC_EXCLUDED:
            continue
        if intent in CLINC_CHITCHAT:
            label = "chitchat"
        elif intent in CLINC_KNOWLEDGE:
            label = "knowledge"
        elif intent in CLINC_MATH:
            label = "math"
        else:
            label = "other"
        source = f"clinc150:{intent}"
        clinc_caps[source] = CLINC_CAPS[label]
        put(source, label, r["text"])

    # Banking77 -> other, stratified over its labels
    banking = read_jsonl(args.shared / "intent" / "banking77.train.jsonl")
    for r in stratified_sample(banking, "label", BANKING77_CAP, rng_for(args.seed, "banking77-sample")):
        put("banking77", "other", r["text"])

    # our own examples
    for r in read_jsonl(args.extra):
        if r["label"] not in LABELS:
            sys.exit(f"{args.extra}: unknown label {r['label']!r}")
        put(f"extra:{r['label']}", r["label"], r["text"])

    # dedup on normalised text: identical texts with different labels are dropped everywhere,
    # repeats with the same label keep the first occurrence (sources in sorted order).
    labels_of: dict[str, set[str]] = defaultdict(set)
    for rows in by_source.values():
        for r in rows:
            labels_of[norm_key(r["full"])].add(r["label"])
    seen: set[str] = set()
    for source in sorted(by_source):
        kept = []
        for r in by_source[source]:
            k = norm_key(r["full"])
            if len(labels_of[k]) > 1:
                stats["dropped_conflicts"] += 1
                continue
            if k in seen:
                stats["dropped_duplicates"] += 1
                continue
            seen.add(k)
            kept.append(r)
        by_source[source] = kept

    # per-source caps
    capped: dict[str, list[dict]] = {}
    for source in sorted(by_source):
        if source.startswith("extra:"):
            cap = len(by_source[source])
        elif source in clinc_caps:
            cap = clinc_caps[source]
        elif source == "banking77":
            cap = BANKING77_CAP
        else:
            cap = SOURCE_CAP_OVERRIDES.get(source, args.source_cap)
        capped[source] = sample(by_source[source], cap, rng_for(args.seed, "source-cap", source))

    # per-class cap, water-filled over the class's sources
    rows: list[dict] = []
    for label in LABELS:
        sources = [s for s in sorted(capped) if source_label[s] == label]
        quota = water_fill({s: len(capped[s]) for s in sources}, args.class_cap)
        for s in sources:
            rows.extend(sample(capped[s], quota[s], rng_for(args.seed, "class-cap", s)))

    for r in rows:
        r["text"] = truncate(r["full"], args.max_chars)
    stats["truncated"] = sum(r["text"] != r["full"] for r in rows)
    return rows, stats


def split_default(rows: list[dict], frac: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Per class, exactly floor-rounded `frac` of the rows go to test, spread over the class's
    sources in proportion (systematic sampling over rows grouped by source)."""
    train, test = [], []
    for label in LABELS:
        rows_l = [r for r in rows if r["label"] == label]
        rng = rng_for(seed, "split", label)
        order = [(r["source"], rng.random(), i) for i, r in enumerate(rows_l)]
        order.sort()
        offset = rng.random()
        for pos, (_, _, i) in enumerate(order):
            is_test = math.floor((pos + 1) * frac + offset) - math.floor(pos * frac + offset) == 1
            (test if is_test else train).append(rows_l[i])
    shuffle_rng = rng_for(seed, "shuffle")
    shuffle_rng.shuffle(train)
    shuffle_rng.shuffle(test)
    return train, test


# --- general-intent benchmarks ------------------------------------------------------------------

def split_banking77(args: argparse.Namespace) -> tuple[list[dict], list[dict]]:
    rows = read_jsonl(args.shared / "intent" / "banking77.train.jsonl")
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[r["label"]].append({"text": r["text"], "label": r["label"]})
    train, test = [], []
    for label in sorted(groups):
        items = groups[label]
        rng_for(args.seed, "banking77-split", label).shuffle(items)
        n_test = round(len(items) * args.banking_test_frac)
        test.extend(items[:n_test])
        train.extend(items[n_test:])
    rng = rng_for(args.seed, "banking77-shuffle")
    rng.shuffle(train)
    rng.shuffle(test)
    return train, test


def split_clinc150(args: argparse.Namespace) -> tuple[list[dict], list[dict]]:
    train = [{"text": r["text"], "label": r["label"]}
             for r in read_jsonl(args.shared / "intent" / "clinc150.train.jsonl") if r["label"] != "oos"]
    test = [{"text": r["text"], "label": r["label"]}
            for r in read_jsonl(args.shared / "intent" / "clinc150.val.jsonl")]
    return train, test


# --- reporting ----------------------------------------------------------------------------------

def print_default_tables(train: list[dict], test: list[dict], long: list[dict]) -> None:
    ct, cs, cl = (Counter(r["label"] for r in x) for x in (train, test, long))
    print("\ndefault.{train,test,long}.jsonl: rows per class")
    print(f"  {'class':<14}{'train':>7}{'test':>7}{'long':>7}{'total':>7}")
    for label in LABELS:
        print(f"  {label:<14}{ct[label]:>7}{cs[label]:>7}{cl[label]:>7}{ct[label] + cs[label]:>7}")
    print(f"  {'all':<14}{len(train):>7}{len(test):>7}{len(long):>7}{len(train) + len(test):>7}")

    def family(source: str) -> str:
        return "clinc150" if source.startswith("clinc150:") else source
    fam = Counter((r["label"], family(r["source"])) for r in train + test)
    fam_test = Counter((r["label"], family(r["source"])) for r in test)
    print("\ndefault: rows per class and source (train+test, of which test)")
    for label in LABELS:
        for (lab, src), n in sorted(fam.items()):
            if lab == label:
                print(f"  {label:<14}{src:<32}{n:>6}{fam_test[(lab, src)]:>6}")


def print_label_table(name: str, train: list[dict], test: list[dict]) -> None:
    ct, cs = Counter(r["label"] for r in train), Counter(r["label"] for r in test)
    labels = sorted(set(ct) | set(cs))
    print(f"\n{name}.{{train,test}}.jsonl: {len(train)} / {len(test)} rows, {len(labels)} labels "
          f"(train per label {min(ct.values())}-{max(ct.values())}, "
          f"test per label {min(cs.values())}-{max(cs.values())})")
    cells = [f"{lab[:34]:<34}{ct[lab]:>5}{cs[lab]:>5}" for lab in labels]
    for i in range(0, len(cells), 2):
        print("  " + "   ".join(cells[i:i + 2]))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for f in ["routing/llmrouter.train.jsonl", "routing/mmlu-pro.train.jsonl",
              "intent/banking77.train.jsonl", "intent/clinc150.train.jsonl", "intent/clinc150.val.jsonl"]:
        if not (args.shared / f).is_file():
            sys.exit(f"missing {f} under --shared {args.shared}")
    args.out.mkdir(parents=True, exist_ok=True)

    rows, stats = collect_default(args)
    train, test = split_default(rows, args.test_frac, args.seed)
    long = [{"text": r["full"], "label": r["label"], "source": r["source"], "chars": len(r["full"])}
            for r in test if len(r["full"]) > args.long_chars]
    strip = lambda rs: [{"text": r["text"], "label": r["label"], "source": r["source"]} for r in rs]
    write_jsonl(args.out / "default.train.jsonl", strip(train))
    write_jsonl(args.out / "default.test.jsonl", strip(test))
    write_jsonl(args.out / "default.long.jsonl", long)

    b_train, b_test = split_banking77(args)
    write_jsonl(args.out / "banking77.train.jsonl", b_train)
    write_jsonl(args.out / "banking77.test.jsonl", b_test)
    c_train, c_test = split_clinc150(args)
    write_jsonl(args.out / "clinc150.train.jsonl", c_train)
    write_jsonl(args.out / "clinc150.test.jsonl", c_test)

    counts = lambda rs: dict(sorted(Counter(r["label"] for r in rs).items()))
    manifest = {
        "labels": LABELS,
        "options": {k: v for k, v in vars(args).items() if k not in ("shared", "extra", "out")},
        "default": {"train": counts(train), "test": counts(test), "long": counts(long), **stats},
        "banking77": {"train": len(b_train), "test": len(b_test), "labels": len(counts(b_train))},
        "clinc150": {"train": len(c_train), "test": len(c_test), "labels_train": len(counts(c_train)),
                     "test_oos": sum(r["label"] == "oos" for r in c_test)},
    }
    with open(args.out / "manifest.json", "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")

    print(f"wrote {args.out}")
    print(f"default: {stats['dropped_duplicates']} duplicate and {stats['dropped_conflicts']} "
          f"conflicting-label rows dropped, {stats['truncated']} texts truncated to ~{args.max_chars} chars")
    print_default_tables(train, test, long)
    print_label_table("banking77", b_train, b_test)
    print_label_table("clinc150", c_train, c_test)
    print(f"  clinc150.test has {manifest['clinc150']['test_oos']} `oos` rows (label absent from train)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
