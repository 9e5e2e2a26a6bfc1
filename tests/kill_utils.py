"""Run a ``vcups`` command in a real subprocess that stops at a chosen point, then kill it.

The child patches one function (``module`` + ``attr``, e.g. ``vcups_core.streaming.segmenter`` and
``StreamingSegmenter.step``) so that its ``n``-th call touches a "ready" file and then sleeps: the
test waits for the file and sends the signal, so the kill lands at the same point every time.
SIGTERM interrupts the sleep (as ``terminate_as_interrupt`` turns it into ``KeyboardInterrupt``).

Run as a script::

    python tests/kill_utils.py MODULE ATTR N READY_FILE -- VCUPS ARGS...
"""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def stall_at(module: str, attr: str, n: int, ready: Path) -> None:
    """Patch ``module.attr`` so that its ``n``-th call touches ``ready`` and sleeps forever."""
    owner: Any = importlib.import_module(module)
    *path, name = attr.split(".")
    for part in path:
        owner = getattr(owner, part)
    real = getattr(owner, name)
    calls = [0]

    def stalled(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == n:
            ready.touch()
            while True:
                time.sleep(0.02)
        return real(*args, **kwargs)

    setattr(owner, name, stalled)


class Stalled:
    """A ``vcups`` subprocess stopped at a patched call (see the module docstring)."""

    def __init__(self, tmp: Path, module: str, attr: str, n: int, argv: list[str]) -> None:
        self.ready = tmp / f"ready.{os.getpid()}.{time.monotonic_ns()}"
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        cmd = [sys.executable, __file__, module, attr, str(n), str(self.ready), "--", *argv]
        self.proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 60
        while not self.ready.exists():
            if self.proc.poll() is not None:
                out, err = self.proc.communicate()
                raise AssertionError(f"exited {self.proc.returncode} before the stop:\n{err}{out}")
            if time.monotonic() > deadline:  # pragma: no cover - a hung child
                self.proc.kill()
                raise AssertionError("the child never reached the stop")
            time.sleep(0.01)

    def kill(self, sig: signal.Signals) -> tuple[int, str]:
        """Send ``sig``; returns the exit code (negative: killed by that signal) and stderr."""
        self.proc.send_signal(sig)
        _, err = self.proc.communicate(timeout=60)
        return self.proc.returncode, err


def main() -> int:
    module, attr, n, ready, sep, *argv = sys.argv[1:]
    assert sep == "--"
    stall_at(module, attr, int(n), Path(ready))
    from training.cli import main as vcups

    return vcups(argv)


if __name__ == "__main__":
    sys.exit(main())
