#!/usr/bin/env bash
# The test command (README): runs every test from a fresh clone.
# Installs the Python test client's packages, builds the binary the Python
# tests drive, fetches the MiniLM weights if missing, then runs the Rust and
# the Python suites.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
cargo build --locked --bin switchyard
target/debug/switchyard fetch-model --model-dir models/all-MiniLM-L6-v2
cargo test --locked
# Timing-sensitive: alone and one at a time, after the suite (tests/it/overload.rs).
cargo test --locked --test it -- --ignored overload --test-threads=1
SWITCHYARD_BIN=target/debug/switchyard python3 -m pytest -q tests/python
