"""`trainer` for the robustness cases (ZETA_SWARM_TRAINER points here): `check-config` and
`zeros` are the real trainer's; `train` is tests/orchestrator/fake_trainer.py, with faults chosen
by the environment, each on a trial's first starts only (counted by the fake's `fake_starts`):

  ROBUST_CORRUPT_FINAL   trial ids whose first start exits 0 but leaves a garbage final.json
  ROBUST_ENV_FAILS       the first N starts of every trial exit 75, as the trainer does on a full disk
  ROBUST_BAD_INPUT       every start exits 2 with a one-line error, as the trainer does on bad input
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "orchestrator"))
import fake_trainer  # noqa: E402


def _starts(out: str) -> int:
    path = os.path.join(out, "fake_starts")
    return int(open(path).read()) if os.path.exists(path) else 0


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[1] != "train":
        real = str(Path(sys.executable).with_name("trainer"))
        os.execv(real, [real, *argv[1:]])
    out = argv[argv.index("--output-dir") + 1]
    trial = os.path.basename(os.path.normpath(out))
    os.makedirs(out, exist_ok=True)
    if os.environ.get("ROBUST_BAD_INPUT"):
        print("trainer: error: --set loss.mse_weight: must be >= 0.0", file=sys.stderr)
        return 2
    starts = _starts(out)
    if starts < int(os.environ.get("ROBUST_ENV_FAILS", "0")):
        with open(os.path.join(out, "fake_starts"), "w") as f:
            f.write(str(starts + 1))
        print(
            f"trainer: error: {out}/checkpoint.pt: No space left on device (the environment)", file=sys.stderr
        )
        return 75
    first = _starts(out) == 0
    code = fake_trainer.main(argv)
    if code == 0 and first and trial in os.environ.get("ROBUST_CORRUPT_FINAL", "").split(","):
        with open(os.path.join(out, "final.json"), "wb") as f:
            f.write(b"\x00garbage{")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
