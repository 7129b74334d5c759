"""What `strata index` prints, through a server or on a Ray cluster alike."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from service.cli.output import emit, printable


def report_index(
    args: argparse.Namespace,
    counts: dict[str, int],
    failed: Sequence[dict[str, str]],
    skipped: Sequence[dict[str, str]],
    stopped: dict[str, str] | None = None,
    total: int = 0,
) -> int:
    """Print the counts, each failure (its error names its file) and each file of the
    folders given that was not sent, with the reason; exit status 1 when any failed.

    `stopped` (code, message, hint) when the run ended before every one of the `total` files was
    answered (Ctrl-C, the server gone): the counts are what the server acknowledged, and the
    document says how many files were left and that a rerun picks them up."""
    document: dict[str, object] = {
        "added": counts.get("added", 0),
        "replaced": counts.get("replaced", 0),
        "unchanged": counts.get("unchanged", 0),
        "failed": list(failed),
        "skipped": list(skipped),
    }
    answered = sum(counts.values()) + len(failed)
    if stopped is not None:
        document["stopped"] = {**stopped, "not_answered": max(0, total - answered)}

    def text() -> str:
        lines = (
            f"added {document['added']}, replaced {document['replaced']}, unchanged "
            f"{document['unchanged']}, failed {len(failed)}, skipped {len(skipped)}"
            + "".join(f"\n  {printable(f['error'])}" for f in failed)
            + "".join(f"\n  skipped {printable(s['uri'])}: {s['reason']}" for s in skipped)
        )
        if stopped is not None:
            hint = f" Hint: {stopped['hint']}" if stopped.get("hint") else ""
            lines += (
                f"\nstopped before the end ({stopped['code']}: {stopped['message']}{hint}): "
                f"{max(0, total - answered)} of {total} files not answered. Run the same "
                "command again once the cause is fixed: images already stored report "
                "unchanged."
            )
        return lines

    emit(args, document, text)
    return 1 if failed or stopped is not None else 0
