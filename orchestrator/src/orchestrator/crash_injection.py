"""Crash injection for the controller's kill-and-restart tests.

The controller calls `crash_point(name)` after every step that changes the world (a tuner write, a
launch, a cancel, a snapshot). With ZETA_SWARM_CRASH_AT=k in the environment the process dies with
os._exit at the k-th crash point, exactly like SIGKILL: no finally blocks, no flushed buffers, no
atexit handlers. Unset, a crash point costs one integer increment. (A crash point is not the
trainer's checkpoint.pt, the model state a trial resumes from, nor a study backup.)
"""

from __future__ import annotations

import os

from orchestrator.errors import ConfigError

CRASH_EXIT_CODE = 86


def _from_env() -> int:
    value = os.environ.get("ZETA_SWARM_CRASH_AT", "")
    try:
        return int(value or 0)
    except ValueError:
        raise ConfigError(
            f"$ZETA_SWARM_CRASH_AT {value!r}: must be a crash point number (a test setting: unset it)"
        ) from None


_crash_at = _from_env()
_count = 0


_only: str | None = None


def arm(k: int, name: str | None = None) -> None:
    """Die at the k-th crash point from now (0 disarms), counting only crash points called `name`
    when given. For forked controllers in tests."""
    global _crash_at, _count, _only
    _crash_at, _count, _only = k, 0, name


def crash_point(name: str) -> None:
    """Count a step; die here if this is the step the environment asked for.

    Args:
        name: what just happened (shown on stderr when the crash fires, to debug a failing k).
    """
    global _count
    if _only is not None and name != _only:
        return
    _count += 1
    if _crash_at and _count == _crash_at:
        os.write(2, f"crash injected at crash point {_count} ({name})\n".encode())
        os._exit(CRASH_EXIT_CODE)
