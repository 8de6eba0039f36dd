"""The API fuzz test (tests/e2e/test_fuzz.py) with many more cases than CI runs.

    .venv/bin/python bench/fuzz.py [--examples 50000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=50_000)
    args = parser.parse_args()
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/e2e/test_fuzz.py"],
                            cwd=ROOT, env={**os.environ, "MEMGATE_FUZZ_EXAMPLES": str(args.examples)})
    outcome = "no 5xx, nothing recorded for a rejected request" if result.returncode == 0 else "FAILED (see above)"
    print(f"fuzz: {args.examples} cases in {time.monotonic() - started:.0f} s: {outcome}")
    sys.exit(result.returncode)


if __name__ == "__main__":
    main()
