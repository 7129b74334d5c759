"""Regenerate service/generated/ from protos/ (run after editing a .proto file).

    python -m service.build_protos

grpc_tools writes absolute imports (`from strata.v1 import strata_pb2`); they are rewritten
to relative ones so the generated code lives inside the `service` package.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
OUT = ROOT / "service" / "generated"


def build(out: Path = OUT) -> list[Path]:
    from grpc_tools import protoc  # a dev dependency: only needed to regenerate

    sources = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    out.mkdir(parents=True, exist_ok=True)
    args = [
        "protoc",
        f"-I{PROTOS}",
        f"-I{Path(protoc.__file__).parent / '_proto'}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    written = []
    for path in out.rglob("*.py*"):
        text = path.read_text()
        fixed = re.sub(r"^from strata\.v1 import", "from . import", text, flags=re.M)
        if fixed != text:
            path.write_text(fixed)
        written.append(path)
    for package in {p.parent for p in out.rglob("*_pb2.py")} | {out, out / "strata"}:
        (package / "__init__.py").touch()
    return written


def check() -> int:
    """Exit non-zero when service/generated/ is out of date with protos/."""
    import filecmp
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        build(fresh)
        stale = [
            str(p.relative_to(fresh))
            for p in fresh.rglob("*.py*")
            if not (OUT / p.relative_to(fresh)).exists()
            or not filecmp.cmp(p, OUT / p.relative_to(fresh), shallow=False)
        ]
    if stale:
        print("service/generated is stale; run `python -m service.build_protos`:", *stale)
        return 1
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        sys.exit(check())
    for path in build(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT):
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
