#!/usr/bin/env bash
# The default corpus of configs/gpt_*.ini: the Python documentation's reStructuredText sources
# (Debian/Ubuntu package python3-doc, PSF License; about 12 MB of English technical prose) turned
# into byte-level llm.c token shards, one document per paragraph, every 20th to validation.
#   launch/pydoc_shards.sh [OUT]        (default out/pydoc_shards; does nothing if it exists)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${1:-out/pydoc_shards}
if [ -f "$out/train_000000.bin" ]; then echo "pydoc_shards.sh: $out exists"; exit 0; fi
src=$(compgen -G "/usr/share/doc/python3.*/html/_sources" | sort -V | tail -n 1 || true)
[ -n "$src" ] || { echo "pydoc_shards.sh: no /usr/share/doc/python3.*/html/_sources; install python3-doc (launch/setup.sh does)" >&2; exit 2; }
python3 "$repo/launch/make_shards.py" --out "$out" "$src"
