"""`strata backbones` and `strata layers`: what can embed, and at which depths."""

from __future__ import annotations

import argparse
from typing import Any

from service.cli.output import emit, table
from service.client import StrataClient


def cmd_backbones(args: argparse.Namespace, client: StrataClient) -> int:
    backbones = client.list_backbones()
    document = {
        "backbones": [
            {
                "name": b.name,
                "description": b.description,
                "input_size": b.input_size,
                "presets": dict(b.presets),
                "weights_available": b.weights_available,
                "weights": b.weights_hint,
            }
            for b in backbones
        ]
    }
    rows = [
        (b.name, "yes" if b.weights_available else "no", b.input_size, b.description)
        for b in backbones
    ]
    missing = [f"  {b.name}: {b.weights_hint}" for b in backbones if not b.weights_available]
    emit(
        args,
        document,
        lambda: (
            table(rows, ("backbone", "weights", "input", "description"))
            + ("\n\nmissing weights:\n" + "\n".join(missing) if missing else "")
        ),
    )
    return 0


def cmd_layers(args: argparse.Namespace, client: StrataClient) -> int:
    response = client.list_layers(args.backbone or "")
    layers: list[dict[str, Any]] = [
        {
            "name": layer.name,
            "channels": layer.channels,
            "stride": layer.stride or None,
            "presets": list(layer.presets),
        }
        for layer in response.layers
        if not args.presets or layer.presets
    ]
    rows = [
        (x["name"], x["channels"], x["stride"] or "pooled", ",".join(x["presets"])) for x in layers
    ]
    emit(
        args,
        {"backbone": response.backbone, "layers": layers},
        lambda: (
            f"backbone {response.backbone}\n"
            + table(rows, ("layer", "channels", "stride", "preset"))
        ),
    )
    return 0


def register(commands: argparse._SubParsersAction, client_options: argparse.ArgumentParser) -> None:
    backbones = commands.add_parser("backbones", parents=[client_options], help="list backbones")
    backbones.set_defaults(run=cmd_backbones)

    layers = commands.add_parser(
        "layers", parents=[client_options], help="list a backbone's layers"
    )
    layers.add_argument("--backbone", default=None)
    layers.add_argument("--presets", action="store_true", help="only the preset depths")
    layers.set_defaults(run=cmd_layers)
