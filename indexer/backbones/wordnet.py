"""The WordNet 3.0 hierarchy of the 1,000 ImageNet-1k classes: ids, hypernym paths, coarse
categories, and the tags stored as item metadata.

ImageNet-1k's classes are WordNet noun synsets; `data/imagenet_wordnet.json` (made by
`python -m indexer.backbones.make_wordnet` from Debian's wordnet-base and timm's class
order; WordNet's licence in data/WORDNET_LICENSE) holds them with every hypernym up to `entity`.

A class's coarse category is the most general synset on its path that covers at most
COARSE_MAX_CLASSES of the 1,000 classes: any dog breed -> `dog` (118 classes; `canine` has
130), any cat -> `feline`, any bird -> `bird`. Coarse categories partition the classes, so
their summed probabilities add up to 1.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from indexer.core.errors import InvalidInput

DATA_FILE = Path(__file__).parent / "data" / "imagenet_wordnet.json"
IMAGENET_CLASSES = 1000
COARSE_MAX_CLASSES = 120
#: Metadata keys written by tagging at ingest (`strata index --tags`): one key per
#: hypernym on the top-1 class's path (TAG_PREFIX + name = "1"), so `--meta tag.dog=1`
#: finds every dog and `--meta tag.mammal=1` every mammal, plus the class itself.
TAG_PREFIX = "tag."
TAG_CLASS = "imagenet.class"
TAG_WNID = "imagenet.wnid"
TAG_COARSE = "imagenet.coarse"


@dataclass(frozen=True)
class Synset:
    wnid: str
    name: str
    #: Names from `entity` down to this synset (its first hypernym at each step).
    path: tuple[str, ...]


@dataclass(frozen=True)
class Hierarchy:
    classes: tuple[Synset, ...]  # index-aligned with the ImageNet-1k logits
    coarse: tuple[Synset, ...]  # each class's coarse category, index-aligned too

    def coarse_scores(self, probabilities: np.ndarray, k: int) -> list[tuple[Synset, float]]:
        """The k coarse categories with the most summed class probability, best first."""
        totals: dict[str, float] = {}
        by_wnid: dict[str, Synset] = {}
        for synset, p in zip(self.coarse, probabilities.tolist(), strict=True):
            totals[synset.wnid] = totals.get(synset.wnid, 0.0) + float(p)
            by_wnid[synset.wnid] = synset
        best = sorted(totals.items(), key=lambda kv: -kv[1])[:k]
        return [(by_wnid[wnid], total) for wnid, total in best]

    def tags(self, index: int) -> dict[str, str]:
        """Item metadata for a top-1 class: class, wnid, coarse and one key per hypernym."""
        synset = self.classes[index]
        tags = {TAG_PREFIX + name: "1" for name in synset.path}
        tags |= {
            TAG_CLASS: synset.name,
            TAG_WNID: synset.wnid,
            TAG_COARSE: self.coarse[index].name,
        }
        return tags


def is_tag_key(key: str) -> bool:
    return key.startswith(TAG_PREFIX) or key in (TAG_CLASS, TAG_WNID, TAG_COARSE)


def check_imagenet_head(categories: Sequence[str], backbone: str) -> None:
    if len(categories) != IMAGENET_CLASSES:
        raise InvalidInput(
            f"backbone {backbone!r} has {len(categories)} classes, not ImageNet-1k's 1,000: "
            "no WordNet tags for it",
            hint="use an ImageNet-1k backbone (strata backbones) or leave out the tags",
        )


@cache
def hierarchy() -> Hierarchy:
    data = json.loads(DATA_FILE.read_text())
    nodes: dict[str, dict[str, object]] = data["synsets"]
    class_ids: list[str] = data["classes"]

    @cache
    def path_ids(wnid: str) -> tuple[str, ...]:
        hypernyms = nodes[wnid]["hypernyms"]
        assert isinstance(hypernyms, list)
        return (*path_ids(hypernyms[0]), wnid) if hypernyms else (wnid,)

    def synset(wnid: str) -> Synset:
        return Synset(
            wnid, str(nodes[wnid]["name"]), tuple(str(nodes[w]["name"]) for w in path_ids(wnid))
        )

    # Classes under each synset along the paths: the measure of how coarse a synset is.
    covered = Counter(w for c in class_ids for w in path_ids(c))
    coarse = [next(w for w in path_ids(c) if covered[w] <= COARSE_MAX_CLASSES) for c in class_ids]
    return Hierarchy(tuple(synset(c) for c in class_ids), tuple(synset(w) for w in coarse))
