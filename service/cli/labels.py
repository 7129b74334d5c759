"""`strata labels ...` and `strata duplicates`: thin clients of the Labels service."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from indexer.core.vocabulary import (
    DEFAULT_DUPLICATE_THRESHOLDS,
    DEFAULT_SUGGESTIONS,
    LABEL_SOURCES,
)
from service.cli.inputs import (
    UsageError,
    at_least,
    checked_folds,
    cross_validation_options,
    parse_pairs,
    read_images,
)
from service.cli.output import emit, printable, table
from service.client import StrataClient

METHOD_CHOICES = ("probe", "self-training", "knn", "propagation", "ensemble")
DEFAULT_CLASSES_SHOWN = 3


# -- numbers from the command line ----------------------------------------------------------
# The server reads 0 as "the default" (proto3 cannot tell 0 from unset), so a 0 typed on the
# command line would silently become the default: each is checked here, before any call.


def checked_threshold(value: float | None) -> float:
    """--threshold as sent: a cosine in (0, 1], or 0 (the server's default) when not given."""
    if value is None:
        return 0.0
    if not 0.0 < value <= 1.0:  # NaN too
        raise UsageError(
            f"--threshold must be in (0, 1] (a cosine; default: the depth's), got {value:g}"
        )
    return value


# -- probe predictions ----------------------------------------------------------------------


def cmd_probe_classify(args: argparse.Namespace, client: StrataClient) -> int:
    top = at_least("-k", args.k, 1, f"classes shown per image; default {DEFAULT_CLASSES_SHOWN}")
    images = read_images(args.images)
    if not images and not args.id:
        raise UsageError("give at least one IMAGE or --id N")
    response = client.predict_probe(
        args.collection, ids=args.id or [], images=images, depth=args.depth or ""
    )
    document = {
        "depth": response.depth,
        "classes": list(response.classes),
        "predictions": [
            {
                "id": p.id or None,
                "uri": p.uri,
                "scores": [{"label": s.label, "score": round(s.score, 6)} for s in p.scores],
            }
            | ({"error": p.error.message} if p.error.message else {})
            for p in response.predictions
        ],
    }

    def text() -> str:
        lines = [f"probe at {response.depth}"]
        for p in response.predictions:
            name = f"#{p.id} {printable(p.uri)}" if p.id else printable(p.uri)
            if p.error.message:
                lines.append(f"{name}: error: {p.error.message}")
            else:
                best = ", ".join(f"{printable(s.label)} ({s.score:.2f})" for s in p.scores[:top])
                lines.append(f"{name}: {best}")
        return "\n".join(lines)

    emit(args, document, text)
    return 1 if any(p.error.message for p in response.predictions) else 0


# -- labels ---------------------------------------------------------------------------------


def _candidates(candidates: Any) -> list[dict[str, Any]]:
    return [
        {"method": m.method, "depth": m.depth, "cv_accuracy": round(m.cv_accuracy, 6)}
        for m in candidates
    ]


def cmd_predict(args: argparse.Namespace, client: StrataClient) -> int:
    r = client.predict_labels(
        args.collection,
        depths=args.depth or [],
        methods=args.method or [],
        folds=checked_folds(args),
        seed=args.seed,
        dry_run=args.dry_run,
    )
    document = {
        "method": r.method,
        "depth": r.depth,
        "cv_accuracy": round(r.cv_accuracy, 6),
        "predictions": [
            {"id": p.id, "uri": p.uri, "label": p.label, "confidence": round(p.confidence, 6)}
            for p in r.predictions
        ],
        "candidates": _candidates(r.candidates),
        "stored": r.stored,
    }

    def text() -> str:
        ranked = sorted(r.candidates, key=lambda m: -m.cv_accuracy)
        lines = [
            f"chosen: {r.method} at {r.depth} (cross-validated accuracy {r.cv_accuracy:.3f}); "
            f"{len(r.predictions)} item(s) predicted, {r.stored} stored",
            table(
                [(m.method, m.depth, f"{m.cv_accuracy:.3f}") for m in ranked],
                ("method", "depth", "cv_accuracy"),
            ),
        ]
        if args.verbose:
            lines += [
                f"  #{p.id} {printable(p.uri)}: {printable(p.label)} ({p.confidence:.2f})"
                for p in r.predictions
            ]
        return "\n".join(lines)

    emit(args, document, text)
    return 0


def cmd_suggest(args: argparse.Namespace, client: StrataClient) -> int:
    n = at_least("-n", args.n, 1, f"the number of suggestions; default {DEFAULT_SUGGESTIONS}")
    r = client.suggest_labels(
        args.collection,
        n,
        depth=args.depth or "",
        metadata=dict(parse_pairs(args.meta or [])),
        folds=checked_folds(args),
        seed=args.seed,
    )
    document = {
        "suggestions": [
            {"id": s.id, "uri": s.uri, "score": round(s.score, 6)} for s in r.suggestions
        ],
        "depth": r.depth,
        "method": r.method,
    }
    emit(
        args,
        document,
        lambda: table(
            [(s.id, f"{s.score:.4f}", s.uri) for s in r.suggestions], ("id", "score", "uri")
        ),
    )
    return 0


def cmd_issues(args: argparse.Namespace, client: StrataClient) -> int:
    r = client.label_issues(
        args.collection,
        depths=args.depth or [],
        methods=args.method or [],
        folds=checked_folds(args),
        seed=args.seed,
    )
    document = {
        "issues": [
            {
                "id": i.id,
                "uri": i.uri,
                "label": i.label,
                "suggested": i.suggested,
                "score": round(i.score, 6),
            }
            for i in r.issues
        ],
        "method": r.method,
        "depth": r.depth,
        "cv_accuracy": round(r.cv_accuracy, 6),
    }
    emit(
        args,
        document,
        lambda: (
            f"{len(r.issues)} label(s) look wrong (by {r.method} at {r.depth}):\n"
            + table(
                [(i.id, i.label, i.suggested, f"{i.score:.3f}", i.uri) for i in r.issues],
                ("id", "label", "suggested", "score", "uri"),
            )
        ),
    )
    return 0


def cmd_import(args: argparse.Namespace, client: StrataClient) -> int:
    text = Path(args.file).read_text(encoding="utf-8-sig")
    r = client.import_labels(args.collection, text, args.by or "")
    emit(
        args,
        {"items": r.items, "labels": r.labels},
        lambda: f"imported {r.labels} label(s) on {r.items} item(s)",
    )
    return 0


def cmd_export(args: argparse.Namespace, client: StrataClient) -> int:
    r = client.export_labels(args.collection, args.source or "")
    if args.output:
        Path(args.output).write_text(r.csv, encoding="utf-8")
    document = {
        "labels": [
            {
                "id": x.id,
                "uri": x.uri,
                "label": x.label,
                "source": x.source,
                "confidence": round(x.confidence, 6),
            }
            for x in r.labels
        ]
    }
    if args.json:
        emit(args, document, str)
    elif args.output:
        print(f"wrote {len(r.labels)} label(s) to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(r.csv)
    return 0


def cmd_set(args: argparse.Namespace, client: StrataClient) -> int:
    written = client.set_labels(args.collection, {i: [args.label] for i in args.ids})
    emit(args, {"labels": written}, lambda: f"labelled {len(args.ids)} item(s) {args.label!r}")
    return 0


def cmd_clear(args: argparse.Namespace, client: StrataClient) -> int:
    if bool(args.ids) == args.all:
        raise UsageError("give item ids, or --all to clear every label of the collection")
    cleared = client.clear_labels(
        args.collection, None if args.all else args.ids, args.source or ""
    )
    emit(args, {"cleared": cleared}, lambda: f"cleared {cleared} label(s)")
    return 0


def cmd_duplicates(args: argparse.Namespace, client: StrataClient) -> int:
    threshold = checked_threshold(args.threshold)
    r = client.duplicates(args.collection, depth=args.depth or "", threshold=threshold)
    document = {
        "groups": [[{"id": m.id, "uri": m.uri} for m in g.members] for g in r.groups],
        "depth": r.depth,
        "threshold": round(r.threshold, 6),
    }

    def text() -> str:
        # :g of the rounded float32: 0.995 and a calibrated 0.9977 print as used, not 0.998.
        used = f"{round(r.threshold, 6):g}"
        lines = [f"{len(r.groups)} group(s) at {r.depth}, cosine >= {used}"]
        for n, g in enumerate(r.groups, 1):
            lines.append(
                f"group {n}: " + ", ".join(f"#{m.id} {printable(m.uri)}" for m in g.members)
            )
        return "\n".join(lines)

    emit(args, document, text)
    return 0


# -- parser ---------------------------------------------------------------------------------


def register(
    commands: argparse._SubParsersAction,
    client_options: argparse.ArgumentParser,
) -> None:
    cv = cross_validation_options()

    labels = commands.add_parser("labels", help="set, import, export, predict, suggest labels")
    actions = labels.add_subparsers(dest="action", required=True, metavar="ACTION")

    predict = actions.add_parser(
        "predict", parents=[client_options, cv], help="label every item without a human label"
    )
    predict.add_argument("--collection", required=True)
    predict.add_argument("--depth", action="append", help="repeatable; default every depth")
    predict.add_argument("--method", action="append", choices=METHOD_CHOICES)
    predict.add_argument("--dry-run", action="store_true", help="predict, store nothing")
    predict.add_argument("--verbose", action="store_true", help="list every prediction")
    predict.set_defaults(run=cmd_predict)

    suggest = actions.add_parser(
        "suggest", parents=[client_options, cv], help="the unlabelled items to label next"
    )
    suggest.add_argument("--collection", required=True)
    suggest.add_argument(
        "-n",
        type=int,
        default=DEFAULT_SUGGESTIONS,
        help=f"how many items to suggest, at least 1 (default {DEFAULT_SUGGESTIONS})",
    )
    suggest.add_argument("--depth", default=None)
    suggest.add_argument("--meta", action="append", help="only items with metadata KEY=VALUE")
    suggest.set_defaults(run=cmd_suggest)

    issues = actions.add_parser(
        "issues", parents=[client_options, cv], help="human labels that look wrong"
    )
    issues.add_argument("--collection", required=True)
    issues.add_argument("--depth", action="append")
    issues.add_argument("--method", action="append", choices=METHOD_CHOICES)
    issues.set_defaults(run=cmd_issues)

    imp = actions.add_parser("import", parents=[client_options], help="labels from a CSV file")
    imp.add_argument("file", metavar="FILE.csv")
    imp.add_argument("--collection", required=True)
    imp.add_argument(
        "--by",
        choices=["uri", "id"],
        default=None,
        help="key column (default: from the header, else detected)",
    )
    imp.set_defaults(run=cmd_import)

    exp = actions.add_parser("export", parents=[client_options], help="labels as CSV")
    exp.add_argument("--collection", required=True)
    exp.add_argument("--source", choices=LABEL_SOURCES, default=None)
    exp.add_argument("-o", "--output", default=None, help="file (default stdout)")
    exp.set_defaults(run=cmd_export)

    set_ = actions.add_parser("set", parents=[client_options], help="human label on items")
    set_.add_argument("ids", type=int, nargs="+", metavar="ID")
    set_.add_argument("--collection", required=True)
    set_.add_argument("--label", required=True)
    set_.set_defaults(run=cmd_set)

    clear = actions.add_parser("clear", parents=[client_options], help="remove labels")
    clear.add_argument("ids", type=int, nargs="*", metavar="ID")
    clear.add_argument("--collection", required=True)
    clear.add_argument("--all", action="store_true", help="every item of the collection")
    clear.add_argument("--source", choices=LABEL_SOURCES, default=None)
    clear.set_defaults(run=cmd_clear)

    classify = actions.add_parser(
        "classify", parents=[client_options], help="class probabilities from the stored probe"
    )
    classify.add_argument("images", nargs="*", metavar="IMAGE")
    classify.add_argument("--id", type=int, action="append", help="a stored item")
    classify.add_argument("--collection", required=True)
    classify.add_argument("--depth", default=None, help="default: the best stored probe")
    classify.add_argument(
        "-k",
        type=int,
        default=DEFAULT_CLASSES_SHOWN,
        help=f"classes shown per image, at least 1 (default {DEFAULT_CLASSES_SHOWN})",
    )
    classify.set_defaults(run=cmd_probe_classify)

    dupes = commands.add_parser(
        "duplicates", parents=[client_options], help="groups of near-duplicate images"
    )
    dupes.add_argument("--collection", required=True)
    dupes.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="cosine similarity in (0, 1] (default: per depth, "
        + ", ".join(f"{d} {t:g}" for d, t in DEFAULT_DUPLICATE_THRESHOLDS.items())
        + " with the default backbone and pooling, else calibrated on the collection)",
    )
    dupes.add_argument("--depth", default=None, help="default: the collection's deepest")
    dupes.set_defaults(run=cmd_duplicates)
