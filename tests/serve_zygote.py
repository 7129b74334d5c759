"""A `strata serve` launcher for crash tests: imports the server once, then forks a fresh
server process per start, so a restart after SIGKILL costs the server's own start-up (open
the database, reconcile the indexes, load the model) and not 10-20 s of importing torch on
a busy machine. Each child is an ordinary `strata serve` process (service.cli.main) that
the test kills with SIGKILL, as a power cut would; nothing in it knows it is under test.

Protocol on stdin/stdout, one line each: `start LOG ARGS...` -> `pid N`;
`kill` -> `killed N` (SIGKILL and reap); `poll` -> `alive` | `exited CODE`; EOF ends it.
No gRPC object exists in this process before a fork (gRPC's core is not fork-safe).
"""

from __future__ import annotations

import os
import signal
import sys
import traceback

import service.server  # noqa: F401  (the imports are the point)
from service.cli.main import main as strata_main


def main() -> None:
    child = 0
    for line in sys.stdin:
        command, *rest = line.split()
        if command == "start":
            log, argv = rest[0], rest[1:]
            child = os.fork()
            if child == 0:
                fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                code = 1
                try:
                    code = strata_main(argv)
                except BaseException:
                    traceback.print_exc()
                finally:
                    sys.stdout.flush()
                    sys.stderr.flush()
                    os._exit(code)
            print(f"pid {child}", flush=True)
        elif command == "kill":
            if child:
                os.kill(child, signal.SIGKILL)
                os.waitpid(child, 0)
            print(f"killed {child}", flush=True)
            child = 0
        elif command == "poll":
            if not child:
                print("exited none", flush=True)
                continue
            pid, status = os.waitpid(child, os.WNOHANG)
            if pid == 0:
                print("alive", flush=True)
            else:
                print(f"exited {os.waitstatus_to_exitcode(status)}", flush=True)
                child = 0
    if child:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)


if __name__ == "__main__":
    main()
