#!/usr/bin/env bash
# Reproduces the intent-head numbers in README: builds the labelled splits from
# ../shared/data, trains the default task-type head (models/intent-head.json),
# Banking77 and CLINC150 heads, and evaluates each on data it did not train on.
# Usage: bash training/intent_report.sh [path/to/switchyard]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/switchyard}
data=target/intent-data
heads=target/intent-heads
mkdir -p "$heads"

python3 training/intent_data.py --shared ../shared/data --out "$data"

echo "== default taxonomy (trained on default.train, scored on default.test)"
"$bin" train-intents --data "$data/default.train.jsonl" --out models/intent-head.json
"$bin" eval-intents --data "$data/default.test.jsonl" --head models/intent-head.json

echo "== what reading at most N tokens costs, on long prompts (> 1200 characters)"
for n in 512 256 128 64; do
  echo "-- max_tokens $n"
  "$bin" eval-intents --data "$data/default.long.jsonl" --head models/intent-head.json --max-tokens "$n" | grep -E "accuracy|macro"
done

echo "== Banking77 (80/20 split of the shared train file)"
"$bin" train-intents --data "$data/banking77.train.jsonl" --out "$heads/banking77.json"
"$bin" eval-intents --data "$data/banking77.test.jsonl" --head "$heads/banking77.json"

echo "== CLINC150 (trained on in-scope train rows, scored on the val file with oos)"
"$bin" train-intents --data "$data/clinc150.train.jsonl" --out "$heads/clinc150.json"
for t in 0.3 0.5 0.7; do
  echo "-- oos threshold $t"
  "$bin" eval-intents --data "$data/clinc150.test.jsonl" --head "$heads/clinc150.json" --oos-threshold "$t"
done
