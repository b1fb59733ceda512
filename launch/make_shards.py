#!/usr/bin/env python3
"""Turns a text corpus into token shards in llm.c's format (a header of 256 int32: magic 20240520,
version 1, token count; then uint16 tokens), which vdp-train reads with --dataset tokens and llm.c
reads too. Tokens are bytes (0-255) with 256 as the end-of-text token that starts each document.

  launch/make_shards.py --out out/pydoc_shards /usr/share/doc/python3.11/html/_sources
  launch/make_shards.py --out d --split files a.txt b.txt       # one document per file

Documents are paragraphs (text between blank lines; --split paragraphs, the default) or whole files
(--split files); every --val-every-th document goes to the validation shard (default 20). Writes
OUT/train_000000.bin, OUT/val_000000.bin, more train shards past --shard-tokens tokens.
"""
import argparse
import os
import struct
import sys

EOT = 256
MAGIC, VERSION = 20240520, 1


def documents(paths, split):
    files = []
    for p in paths:
        if os.path.isdir(p):
            for root, _, names in os.walk(p):
                files += [os.path.join(root, n) for n in names if n.endswith((".txt", ".rst", ".md"))]
        else:
            files.append(p)
    if not files:
        sys.exit(f"make_shards.py: no text files in {paths}")
    for f in sorted(files):
        with open(f, "rb") as fh:
            data = fh.read()
        if split == "files":
            if data.strip():
                yield data
            continue
        for para in data.replace(b"\r\n", b"\n").split(b"\n\n"):
            if para.strip():
                yield para.strip()


def write_shard(path, tokens):
    header = [0] * 256
    header[0], header[1], header[2] = MAGIC, VERSION, len(tokens)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<256i", *header))
        f.write(struct.pack(f"<{len(tokens)}H", *tokens))
    os.replace(path + ".tmp", path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="+", help="text files or folders (.txt, .rst, .md inside)")
    ap.add_argument("--out", required=True, help="folder for the shards")
    ap.add_argument("--split", choices=["paragraphs", "files"], default="paragraphs")
    ap.add_argument("--val-every", type=int, default=20, help="every N-th document goes to validation")
    ap.add_argument("--shard-tokens", type=int, default=100_000_000, help="tokens per train shard")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    train, val, shard, docs, total = [], [], 0, 0, 0
    for i, doc in enumerate(documents(a.inputs, a.split)):
        tokens = [EOT] + list(doc)
        (val if a.val_every > 0 and i % a.val_every == a.val_every - 1 else train).extend(tokens)
        docs += 1
        if len(train) >= a.shard_tokens:
            write_shard(os.path.join(a.out, f"train_{shard:06d}.bin"), train)
            shard, total, train = shard + 1, total + len(train), []
    if train:
        write_shard(os.path.join(a.out, f"train_{shard:06d}.bin"), train)
    if val:
        write_shard(os.path.join(a.out, "val_000000.bin"), val)
    print(f"make_shards.py: {docs} documents, {total + len(train)} train and {len(val)} "
          f"validation tokens in {a.out}")


if __name__ == "__main__":
    main()
