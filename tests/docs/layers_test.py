"""The parts' layer order, as include/vdp/README.md ("Parts and layers") writes it down, holds in
the code: a part's headers and sources include only parts above it (the include graph is acyclic),
every part of the table has its folder and every folder of include/vdp and src is in the table.
    layers_test.py REPO"""
import pathlib
import re
import sys

repo = pathlib.Path(sys.argv[1])
design = (repo / "include/vdp/README.md").read_text()
section = design.split("## Parts and layers", 1)[1].split("\n## ", 1)[0]
order = re.findall(r"^\| `(\w+)` (?:\(src only\) )?\|", section, re.M)
rank = {p: i for i, p in enumerate(order)}
failed = []
for root in ("include/vdp", "src"):
    for folder in sorted(p for p in (repo / root).iterdir() if p.is_dir()):
        if folder.name not in rank and folder.name != "cmake":
            failed.append(f"{root}/{folder.name} is not in the layer table")
for part in order:
    if part != "apps" and not (repo / "include/vdp" / part).is_dir():
        failed.append(f"the layer table names '{part}', which include/vdp lacks")
checked = 0
for path in sorted(list((repo / "include/vdp").glob("*/*.h")) + list((repo / "src").glob("*/**/*.[ch]*"))):
    rel = path.relative_to(repo)
    part = rel.parts[2] if rel.parts[0] == "include" else rel.parts[1]
    if part not in rank:
        continue
    for used in re.findall(r'#include "vdp/(\w+)/', path.read_text()):
        checked += 1
        if used not in rank or rank[used] > rank[part]:
            failed.append(f"{rel} ({part}) includes vdp/{used}, a layer below it")
for f in failed:
    print("FAIL:", f)
print(f"layers: {len(order)} parts, {checked} includes checked; {checked - len(failed)} passed, {len(failed)} failed")
sys.exit(1 if failed else 0)
