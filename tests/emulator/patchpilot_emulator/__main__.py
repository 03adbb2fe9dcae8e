"""``python -m patchpilot_emulator --port PORT [--host 127.0.0.1]``

Starts moto server with patchpilot's additions.  With ``--exit-with-stdin`` the server exits
when its standard input is closed, so a parent process that dies (even by SIGKILL) takes the
emulator with it.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading

from . import install


def _watch_stdin() -> None:
    try:
        while sys.stdin.buffer.read(1024):
            pass
    except (OSError, ValueError):
        pass
    _append_iam_stats()
    os._exit(0)


def _append_iam_stats() -> None:
    """With PATCHPILOT_IAM_STATS_FILE set, the emulator appends what IAM enforcement cost it
    (one JSON line) when it exits: a whole test run's figure is the sum over its emulators."""
    path = os.environ.get("PATCHPILOT_IAM_STATS_FILE")
    if not path:
        return
    import json

    from . import hooks

    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(hooks.iam_stats()) + "\n")
    except OSError:
        pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="patchpilot_emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--exit-with-stdin",
        action="store_true",
        help="exit when stdin reaches EOF (parent-death watchdog)",
    )
    args = parser.parse_args(argv)
    install()
    if args.exit_with_stdin:
        threading.Thread(target=_watch_stdin, name="stdin-watchdog", daemon=True).start()
    from moto import server

    server.main(["-H", args.host, "-p", str(args.port)])


if __name__ == "__main__":
    main()
