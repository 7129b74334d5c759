"""What `strata index` prints, through a server or on a Ray cluster alike."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from service.cli.output import emit


def report_index(
    args: argparse.Namespace,
    counts: dict[str, int],
    failed: Sequence[dict[str, str]],
    skipped: Sequence[dict[str, str]],
) -> int:
    """Print the counts, each failure (its error names its file) and each file of the
    folders given that was not sent, with the reason; exit status 1 when any failed."""
    document = {
        "added": counts.get("added", 0),
        "replaced": counts.get("replaced", 0),
        "unchanged": counts.get("unchanged", 0),
        "failed": list(failed),
        "skipped": list(skipped),
    }
    emit(
        args,
        document,
        lambda: (
            f"added {document['added']}, replaced {document['replaced']}, unchanged "
            f"{document['unchanged']}, failed {len(failed)}, skipped {len(skipped)}"
            + "".join(f"\n  {f['error']}" for f in failed)
            + "".join(f"\n  skipped {s['uri']}: {s['reason']}" for s in skipped)
        ),
    )
    return 1 if failed else 0
