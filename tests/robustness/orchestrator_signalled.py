"""`orchestrator` with a signal sent to itself at a chosen crash point, for the
robustness cases that interrupt the controller at one exact point (no timing involved).

  ROBUST_SIGNAL_AT   "<signal>:<crash point name>[:<k>]", e.g. "INT:wrapper spawned:1": after the
                     k-th (default first) crash point of that name, os.kill(own pid, SIGINT)

The patch replaces orchestrator.crash_injection.crash_point before any orchestrator module binds
it (`from orchestrator.crash_injection import crash_point` happens on their import, later), so the
controller, the phases and the local runner all call it. Python runs a signal's handler at the
next bytecode boundary: SIGINT's KeyboardInterrupt is raised right after the crash point, inside
the step that follows it (for "wrapper spawned": between the wrapper's fork and the write of its
pid to `spawned`).
"""

from __future__ import annotations

import os
import signal
import sys

from orchestrator import crash_injection

_sig, _name, *_k = os.environ["ROBUST_SIGNAL_AT"].split(":")
_target = int(_k[0]) if _k else 1
_seen = 0
_real = crash_injection.crash_point


def crash_point(name: str) -> None:
    global _seen
    _real(name)
    if name == _name:
        _seen += 1
        if _seen == _target:
            os.kill(os.getpid(), getattr(signal, f"SIG{_sig}"))


crash_injection.crash_point = crash_point
# A shell without job control (nohup ... &, some CI runners) starts this process with SIGINT
# ignored, and Python keeps it ignored: give it the handler a terminal's Ctrl-C finds, as the
# Ctrl-C case's preexec_fn does (see tests/robustness/test_cli_robustness.py).
signal.signal(signal.SIGINT, signal.default_int_handler)

from orchestrator.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.argv[0] = "orchestrator"
    sys.exit(main())
