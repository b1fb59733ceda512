#!/usr/bin/env bash
# The documents hold: README.md is at most 250 lines; every relative link in README.md and in the
# reference documents beside the parts resolves to a file (and an anchor to a heading) inside the
# repository; no file in the repository cites a file outside it.
#   docs_test.sh REPO
set -u
repo=$(cd "$1" && pwd)
cd "$repo" || exit 1
passes=0 fails=0
pass() { passes=$((passes + 1)); }
fail() { fails=$((fails + 1)); echo "FAIL: $*"; }

lines=$(wc -l <README.md)
if [ "$lines" -le 250 ]; then pass; else fail "README.md has $lines lines (at most 250)"; fi

# GitHub's anchor of a heading: lower case, spaces to dashes, punctuation but - and _ dropped.
anchors() { grep -E '^#{1,6} ' "$1" | sed -E 's/^#+ //' | tr 'A-Z' 'a-z' | sed -E 's/[^a-z0-9 _-]//g; s/ /-/g'; }

docs=(README.md launch/README.md configs/README.md include/vdp/README.md docker/README.md tests/README.md
      src/apps/bench/README.md)
for doc in "${docs[@]}"; do
  [ -f "$doc" ] || { fail "$doc is missing"; continue; }
  dir=$(dirname "$doc")
  # Markdown links [text](target), outside code blocks and spans; absolute URLs are not checked.
  while IFS= read -r target; do
    case "$target" in http://*|https://*|mailto:*) continue ;; esac
    file=${target%%#*} anchor=
    [[ "$target" == *"#"* ]] && anchor=${target#*#}
    path=$doc
    [ -n "$file" ] && path=$dir/$file
    resolved=$(realpath -m "$path")
    case "$resolved" in "$repo"/*) ;; *) fail "$doc links outside the repository: $target"; continue ;; esac
    [ -e "$resolved" ] || { fail "$doc: link to a missing file: $target"; continue; }
    if [ -n "$anchor" ] && ! anchors "$resolved" | grep -qx -- "$anchor"; then
      fail "$doc: no heading for the anchor of $target"; continue
    fi
    pass
  done < <(awk '/^```/ { fence = !fence; next } !fence' "$doc" | sed -E 's/`[^`]*`//g' | grep -oE '\]\([^)]+\)' |
           sed -E 's/^\]\((.*)\)$/\1/')
done

# No citation of a file outside the repository (the project's design lives in include/vdp/README.md).
outside=$(git ls-files | grep -v '^tests/docs/docs_test.sh$' | xargs grep -nE 'DESIGN\.md|STYLE\.md|\.\./shared/' 2>/dev/null)
if [ -z "$outside" ]; then pass; else fail "files cite files outside the repository:"; echo "$outside" | head; fi

echo "docs: $passes passed, $fails failed"
[ "$fails" -eq 0 ]
