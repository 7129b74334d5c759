"""`strata probe`: a linear probe per depth, as a table, a chart and confusion matrices."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from service.cli.inputs import checked_folds, cross_validation_options
from service.cli.output import emit, printable, table
from service.cli.pictures import write_confusion
from service.client import StrataClient
from service.generated.strata.v1 import labels_pb2 as pb

CHART_SUFFIXES = (".png", ".svg")


def probe_doc(r: pb.DepthProbe) -> dict[str, Any]:
    n = len(r.classes)
    return {
        "depth": r.depth,
        "dim": r.dim,
        "accuracy": round(r.accuracy, 6),
        "macro_f1": round(r.macro_f1, 6),
        "n_train": r.n_train,
        "n_test": r.n_test,
        "folds": r.folds,
        "c": float(f"{r.c:.7g}"),  # a float32 on the wire: 0.3, not 0.30000001192092896
        "classes": list(r.classes),
        "per_class": {m.label: round(m.accuracy, 6) for m in r.per_class},
        # Held-out items behind each class's accuracy: 0 for a class never held out (one
        # label), whose accuracy measures nothing.
        "support": {m.label: m.support for m in r.per_class},
        "confusion": [list(r.confusion[i * n : (i + 1) * n]) for i in range(n)],
    }


def write_chart(reports: list[dict[str, Any]], collection: str, path: str) -> list[str]:
    """Accuracy and macro-F1 per depth, shallow to deep, as PNG and SVG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = Path(path)
    if base.suffix.lower() in CHART_SUFFIXES:
        base = base.with_suffix("")
    base.parent.mkdir(parents=True, exist_ok=True)
    names = [f"{r['depth']}\n({r['dim']}-d)" for r in reports]
    figure, axes = plt.subplots(figsize=(max(4.0, 1.3 * len(reports) + 2), 3.6))
    axes.plot(names, [r["accuracy"] for r in reports], marker="o", label="accuracy")
    axes.plot(names, [r["macro_f1"] for r in reports], marker="s", ls="--", label="macro-F1")
    for x, r in enumerate(reports):
        axes.annotate(
            f"{r['accuracy']:.2f}",
            (x, r["accuracy"]),
            textcoords="offset points",
            xytext=(0, 6),
            ha="center",
            fontsize=8,
        )
    axes.set_ylim(0, 1.05)
    axes.set_ylabel("held-out score (k-fold)")
    axes.set_title(f"linear probe per depth: {collection}")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    figure.tight_layout()
    written = []
    for suffix in CHART_SUFFIXES:
        target = base.with_suffix(suffix)
        figure.savefig(target)
        written.append(str(target))
    plt.close(figure)
    return written


def cmd_probe(args: argparse.Namespace, client: StrataClient) -> int:
    reports = [
        probe_doc(r)
        for r in client.probe(args.collection, args.depth or [], checked_folds(args), args.seed)
    ]
    chart = (
        []
        if args.no_chart
        else write_chart(reports, args.collection, args.chart or f"strata-probe-{args.collection}")
    )
    document: dict[str, Any] = {"depths": reports}
    if chart:
        document["chart"] = chart
        # One confusion matrix per depth, next to the chart: which classes a depth mixes up.
        base = Path(chart[0]).with_suffix("")
        document["confusion"] = [
            write_confusion(
                r["classes"],
                np.asarray(r["confusion"]),
                f"{args.collection} at {r['depth']}: held-out predictions",
                base.with_name(f"{base.name}-confusion-{r['depth']}.png"),
            )
            for r in reports
        ]
    rows = [
        (
            r["depth"],
            r["dim"],
            f"{r['accuracy']:.3f}",
            f"{r['macro_f1']:.3f}",
            r["n_train"],
            r["n_test"],
            r["folds"],
            f"{r['c']:g}",
        )
        for r in reports
    ]

    def text() -> str:
        header = ("depth", "dim", "accuracy", "macro_f1", "n_train", "n_test", "folds", "C")
        lines = [table(rows, header)]
        if reports:
            best = max(reports, key=lambda r: r["accuracy"])
            measured = {k: v for k, v in best["per_class"].items() if best["support"][k]}
            worst = sorted(measured.items(), key=lambda kv: kv[1])[:3]
            lines.append(
                f"best: {best['depth']}; its weakest classes: "
                + ", ".join(f"{printable(label)} {acc:.2f}" for label, acc in worst)
            )
        lines += [f"chart: {path}" for path in chart]
        lines += [f"confusion: {path}" for path in document.get("confusion", [])]
        return "\n".join(lines)

    emit(args, document, text)
    return 0


def register(
    commands: argparse._SubParsersAction,
    client_options: argparse.ArgumentParser,
) -> None:
    cv = cross_validation_options()
    probe = commands.add_parser(
        "probe", parents=[client_options, cv], help="linear probe per depth: accuracy report"
    )
    probe.add_argument("--collection", required=True)
    probe.add_argument("--depth", action="append", help="repeatable; default every depth")
    probe.add_argument(
        "--chart",
        default=None,
        help="chart path, .png and .svg written (default strata-probe-COLLECTION)",
    )
    probe.add_argument("--no-chart", action="store_true", help="write no chart")
    probe.set_defaults(run=cmd_probe)
