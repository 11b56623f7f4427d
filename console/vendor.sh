#!/usr/bin/env bash
# The console's charting library is uPlot exactly as published: this fetches
# the pinned release from the npm registry and checks (or, with --write,
# replaces) the copies under console/vendor/ that the binary compiles in.
set -euo pipefail
cd "$(dirname "$0")"
VERSION=1.6.32
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "uplot@$VERSION" >/dev/null && tar xzf "uplot-$VERSION.tgz")
for f in uPlot.iife.min.js uPlot.min.css; do
  if [[ "${1:-}" == "--write" ]]; then
    cp "$tmp/package/dist/$f" "vendor/$f"
  elif ! cmp -s "$tmp/package/dist/$f" "vendor/$f"; then
    echo "console/vendor/$f differs from uplot@$VERSION: run console/vendor.sh --write" >&2
    exit 1
  fi
done
[[ "${1:-}" == "--write" ]] && cp "$tmp/package/LICENSE" vendor/uPlot.LICENSE
echo "console/vendor matches uplot@$VERSION"
