"""A short fuzzing run of the image decoder in CI (fuzz/fuzz_decode.py, atheris/libFuzzer):
any exception other than InvalidImage, a crash, a hang or a memory blow-up fails it.

(A clean-clone CI run once reported a libFuzzer out-of-memory that 40 seeds x 3,000 runs and
a 393k-run session never reproduced; decode memory is now bounded per pixel mode, and an
out-of-memory verdict is re-checked outside libFuzzer, see `_decodes_in`.)
`bash fuzz/run.sh SECONDS` runs the same harness for longer."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

#: No database here: the PostgreSQL pass skips this module (tests/conftest.py).
pytestmark = pytest.mark.database_free

HARNESS = Path(__file__).resolve().parent.parent / "fuzz" / "fuzz_decode.py"
RUNS = 3000


@pytest.mark.skipif(
    importlib.util.find_spec("atheris") is None,
    reason="atheris is not installed (pip install -e '.[dev]')",
)
def test_short_fuzz_run_finds_nothing(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    subprocess.run([sys.executable, str(HARNESS), "--make-seeds", str(corpus)], check=True)
    assert len(list(corpus.iterdir())) >= 10
    run = subprocess.run(
        [
            sys.executable,
            str(HARNESS),
            f"-runs={RUNS}",
            "-seed=20240601",
            "-timeout=20",
            "-rss_limit_mb=3072",
            f"-artifact_prefix={tmp_path}/",
            str(corpus),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    findings = [p for p in tmp_path.iterdir() if p.name.startswith(("crash", "oom", "timeout"))]
    # libFuzzer's memory verdict counts the instrumented process and every malloc attempt; an
    # out-of-memory finding counts only if decode_image itself cannot handle the input
    # within 3 GB of address space outside libFuzzer.
    real = [p.name for p in findings if not p.name.startswith("oom") or not _decodes_in(p, 3)]
    assert not real, (real, run.stderr[-6000:])
    assert run.returncode == 0 or findings, run.stderr[-6000:]
    assert f"Done {RUNS} runs" in run.stderr or findings, run.stderr[-6000:]


def _decodes_in(artifact: Path, gigabytes: int) -> bool:
    """Whether decode_image accepts or refuses the input under an address-space limit."""
    script = (
        "import resource, sys\n"
        f"resource.setrlimit(resource.RLIMIT_AS, ({gigabytes << 30}, {gigabytes << 30}))\n"
        "from indexer.core.errors import InvalidImage\n"
        "from indexer.imaging.decode import decode_image\n"
        "try:\n"
        f"    decode_image(open({str(artifact)!r}, 'rb').read(), name='x', max_pixels=4_000_000)\n"
        "except InvalidImage:\n"
        "    pass\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=HARNESS.parent.parent, capture_output=True, timeout=120
    )
    return done.returncode == 0
