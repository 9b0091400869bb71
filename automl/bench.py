"""``python -m automl.bench``: the meta-benchmark. It is research, not part of the installed package: it lives
in the repository's ``benchmarks/`` folder, which this command runs when started from a checkout."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from benchmarks.__main__ import main as run_benchmarks  # found only where a checkout is on the path
    except ModuleNotFoundError as exc:
        if exc.name != "benchmarks":
            raise
        sys.exit("error: the benchmarks are not installed with automl; run `python -m automl.bench` from a "
                 "checkout of its repository (its benchmarks/ folder)")
    run_benchmarks()


if __name__ == "__main__":
    main()
