"""Generate indexer/backbones/data/imagenet_wordnet.json: the WordNet 3.0 hypernym hierarchy of
the 1,000 ImageNet-1k classes, index-aligned with every registered classifier head.

Inputs, both from the registries (nothing downloaded at run time):
- WordNet 3.0's noun database, Debian package `wordnet-base` (`apt-get install -y
  wordnet-base`; files in /usr/share/wordnet/). Its licence is copied beside the data file.
- The ImageNet-1k index -> wnid order, shipped with timm (timm/data/_info/imagenet_synsets.txt).

Run: `.venv/bin/python -m indexer.backbones.make_wordnet` (add `--check` to only verify that the
committed file is what this script makes).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "data" / "imagenet_wordnet.json"
LICENCE_OUT = OUT.with_name("WORDNET_LICENSE")
WORDNET = Path("/usr/share/wordnet/data.noun")
LICENCE = Path("/usr/share/doc/wordnet-base/copyright")
# Found without importing timm (and torch with it): only its data file is read.
_TIMM = importlib.util.find_spec("timm")
TIMM_SYNSETS = (
    Path(_TIMM.origin if _TIMM and _TIMM.origin else "timm").parent
    / "data"
    / "_info"
    / "imagenet_synsets.txt"
)
#: WordNet pointer symbols for a hypernym and an instance hypernym.
HYPERNYM_POINTERS = ("@", "@i")


def read_nouns(path: Path) -> dict[str, tuple[str, list[str]]]:
    """wnid -> (first lemma with spaces, hypernym wnids in WordNet's order)."""
    nouns: dict[str, tuple[str, list[str]]] = {}
    for line in path.read_text(encoding="latin-1").splitlines():
        if line.startswith("  "):  # the licence header
            continue
        fields = line.split(" | ", 1)[0].split()
        offset, word_count = fields[0], int(fields[3], 16)
        lemma = fields[4].replace("_", " ")
        at = 4 + 2 * word_count
        pointer_count = int(fields[at])
        hypernyms = []
        for i in range(pointer_count):
            symbol, target, pos = fields[at + 1 + 4 * i : at + 4 + 4 * i]
            if symbol in HYPERNYM_POINTERS and pos == "n":
                hypernyms.append("n" + target)
        nouns["n" + offset] = (lemma, hypernyms)
    return nouns


def build() -> dict[str, object]:
    classes = TIMM_SYNSETS.read_text().split()
    if len(classes) != 1000:
        sys.exit(f"{TIMM_SYNSETS}: expected 1000 wnids, found {len(classes)}")
    nouns = read_nouns(WORDNET)
    synsets: dict[str, dict[str, object]] = {}
    pending = list(classes)
    while pending:
        wnid = pending.pop()
        if wnid in synsets:
            continue
        if wnid not in nouns:
            sys.exit(f"{wnid} is not a WordNet 3.0 noun synset")
        name, hypernyms = nouns[wnid]
        synsets[wnid] = {"name": name, "hypernyms": hypernyms}
        pending.extend(hypernyms)
    return {
        "source": "WordNet 3.0 (Princeton University) data.noun via Debian wordnet-base; "
        "ImageNet-1k class order from timm imagenet_synsets.txt; "
        "made by python -m indexer.backbones.make_wordnet",
        "classes": classes,
        "synsets": dict(sorted(synsets.items())),
    }


def serialise(data: dict[str, object]) -> str:
    """Stable, diff-friendly JSON: the class list on one line, one synset per line."""
    synsets = data["synsets"]
    assert isinstance(synsets, dict)
    lines = [
        "{",
        f'"source": {json.dumps(data["source"])},',
        f'"classes": {json.dumps(data["classes"])},',
        '"synsets": {',
        ",\n".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in synsets.items()),
        "}}",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare with the file")
    args = parser.parse_args()
    for needed in (WORDNET, LICENCE):
        if not needed.exists():
            sys.exit(f"{needed} is missing: apt-get update && apt-get install -y wordnet-base")
    text = serialise(build())
    if args.check:
        same = OUT.exists() and OUT.read_text() == text
        print(f"{OUT}: {'up to date' if same else 'differs from what WordNet gives'}")
        return 0 if same else 1
    OUT.write_text(text)
    shutil.copyfile(LICENCE, LICENCE_OUT)
    print(f"wrote {OUT} ({OUT.stat().st_size:,} bytes) and {LICENCE_OUT.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
