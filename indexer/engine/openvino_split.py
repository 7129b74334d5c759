"""A converted tap graph cut in two after a named layer: the early layers, whose outputs
bf16 rounds too coarsely (EfficientNet-Lite's first block: min cosine 0.98 to fp32 at
pre-logits when it runs in bf16, 0.998 when it stays fp32), run in fp32 and the rest in
bf16 on a CPU with native bf16 (`python bench/precision.py`). Per-node precision marks
(`disable_fp16_compression`) do not survive OpenVINO's CPU graph passes, so the cut is real:
two models, the first one's single output the second one's input.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

#: How OpenVINO's PyTorch frontend names the ops of TapGraph's `model` submodules.
_OP_PREFIX = "__module.model."


def _ancestors(node: Any) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    stack = [node]
    while stack:
        current = stack.pop()
        if current.get_name() in seen:
            continue
        seen[current.get_name()] = current
        stack.extend(i.get_source_output().get_node() for i in current.inputs())
    return seen


def _cut_node(model: Any, layer: str) -> Any | None:
    """The op whose output is `layer`'s output, when that one tensor is all that crosses
    from the layers up to `layer` into the rest of the graph; None otherwise (a tap inside
    the early layers, a layer not in the graph)."""
    tag = _OP_PREFIX + layer
    ops = model.get_ordered_ops()
    inside = [
        op
        for op in ops
        if op.get_type_name() != "Constant"
        and op.get_friendly_name().startswith((tag + ".", tag + "/"))
    ]
    if not inside:
        return None
    last = inside[-1]
    before = _ancestors(last)
    if any(node.get_type_name() == "Result" for node in before.values()):
        return None
    for op in ops:
        if op.get_name() in before:
            continue
        for source in (i.get_source_output().get_node() for i in op.inputs()):
            name = source.get_name()
            if name in before and name != last.get_name() and source.get_type_name() != "Constant":
                return None
    return last


def split_after(ov: ModuleType, core: Any, xml: Path, layer: str) -> tuple[Any, Any] | None:
    """(pixels -> `layer`'s output, that output -> every tap), or None where no clean cut
    exists. The cut tensor's consumers are moved onto a new input, so one read of `xml`
    falls into the two disjoint graphs."""
    model = core.read_model(str(xml))
    cut = _cut_node(model, layer)
    if cut is None:
        return None
    crossing = cut.output(0)
    entry = ov.op.Parameter(crossing.get_element_type(), crossing.get_partial_shape())
    for target in list(crossing.get_target_inputs()):
        target.replace_source_output(entry.output(0))
    early = ov.Model([ov.op.Result(crossing)], list(model.get_parameters()), f"through {layer}")
    late = ov.Model(list(model.get_results()), [entry], f"after {layer}")
    return early, late
