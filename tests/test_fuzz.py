"""A short fuzzing run of the image decoder in CI (fuzz/fuzz_decode.py, atheris/libFuzzer):
any exception other than InvalidImage, a crash, a hang or a memory blow-up fails it.

Two clean-clone CI runs reported a libFuzzer out-of-memory on the empty input that no fuzzing
session reproduced. The cause was the launch, not the decoder: a process started by
subprocess inherits its parent's peak RSS through exec (vfork + exec keep ru_maxrss), and
libFuzzer's -rss_limit_mb reads that peak, so pytest's own peak, with the models earlier tests
loaded, counted as the harness's. The harness now judges memory per input itself (its
address-space cap turns a blow-up into a MemoryError on that very input) and leaves
libFuzzer's RSS check off. `bash fuzz/run.sh SECONDS` runs the same harness for longer."""

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
            f"-artifact_prefix={tmp_path}/",
            str(corpus),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    findings = [
        p.name for p in tmp_path.iterdir() if p.name.startswith(("crash", "oom", "timeout"))
    ]
    assert not findings, (findings, run.stderr[-6000:])
    assert run.returncode == 0, run.stderr[-6000:]
    assert f"Done {RUNS} runs" in run.stderr, run.stderr[-6000:]
