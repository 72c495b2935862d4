"""Ctrl-C at many moments of a real `ao batch-spawn`: runs the offset test of
tests/test_interrupts.py at every 50 ms from 0.3 s to 4 s (both kinds of signal), each in a
fresh repository, home and tmux server, and reports which left anything half-made.

    python tests/sigint_sweep.py [--from 0.3] [--to 4.0] [--step 0.05]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from", dest="start", type=float, default=0.3)
    ap.add_argument("--to", dest="end", type=float, default=4.0)
    ap.add_argument("--step", type=float, default=0.05)
    args = ap.parse_args()
    n = round((args.end - args.start) / args.step) + 1
    offsets = ",".join(f"{args.start + i * args.step:.3f}" for i in range(n))
    env = {**os.environ, "AO_SIGINT_OFFSETS": offsets}
    root = Path(__file__).resolve().parents[1]
    return subprocess.call([sys.executable, "-m", "pytest", "-q",
                            "tests/test_interrupts.py::"
                            "test_ctrl_c_at_a_time_offset_leaves_nothing_half_made"],
                           cwd=root, env=env)


if __name__ == "__main__":
    sys.exit(main())
