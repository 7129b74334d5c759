"""A short fuzzing run of the image decoder in CI (fuzz/fuzz_decode.py, atheris/libFuzzer):
any exception other than InvalidImage, a crash, a hang or a memory blow-up fails it.

Two clean-clone CI runs reported a libFuzzer out-of-memory on the empty input that no fuzzing
session reproduced. The cause was the test, not the decoder: a process started by
subprocess inherits its parent's peak RSS through exec (vfork + exec keep ru_maxrss), and
libFuzzer's -rss_limit_mb reads that peak, so pytest's own peak, with the models earlier tests
loaded, counted as the harness's. The harness now starts as a grandchild (`_run_fresh`), and
judges memory per input itself (its address-space cap turns a blow-up into a MemoryError on
that very input). `bash fuzz/run.sh SECONDS` runs the same harness for longer."""

from __future__ import annotations

import importlib.util
import os
import signal
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
    returncode, _, stderr = _run_fresh(
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
        timeout=300,
    )
    findings = [
        p.name for p in tmp_path.iterdir() if p.name.startswith(("crash", "oom", "timeout"))
    ]
    assert not findings, (findings, stderr[-6000:])
    assert returncode == 0, stderr[-6000:]
    assert f"Done {RUNS} runs" in stderr, stderr[-6000:]


def test_a_fresh_run_does_not_inherit_this_process_peak_memory() -> None:
    """The launch itself: a plain child reports pytest's peak RSS, the grandchild its own."""
    ballast = b"\x01" * (512 << 20)  # every page written: this process's peak is >= 512 MB
    del ballast
    peak_kb = [
        sys.executable,
        "-c",
        "import resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)",
    ]
    child = subprocess.run(peak_kb, capture_output=True, text=True, check=True)
    assert int(child.stdout) > 512 << 10
    returncode, stdout, _ = _run_fresh(peak_kb, timeout=60)
    assert returncode == 0
    assert int(stdout) < 256 << 10


def _run_fresh(args: list[str], timeout: float) -> tuple[int, str, str]:
    """Run `args` as a grandchild, forked by a small shell, so that its peak RSS starts from
    its own; returns its exit status, stdout and stderr. A timeout kills the whole session."""
    process = subprocess.Popen(
        ["sh", "-c", '"$@" & wait $!', "sh", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        _, stderr = process.communicate()
        raise AssertionError(f"{args[1]} ran past {timeout} s: {stderr[-6000:]}") from None
    return process.returncode, stdout, stderr
