"""How long ``relocbench list-baselines`` takes, from the committed listing table and the
plain reference (import the whole zoo and build every model to count its parameters).

    .venv/bin/python benchmarks/bench_list_baselines.py [--repeat 3]

Each variant runs in a fresh Python process (imports are what costs), ``--repeat`` times;
the table shows the median wall time of each and their ratio, measured in this run.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

FAST = ("from click.testing import CliRunner; from relocbench.cli import cli; "
        "r = CliRunner().invoke(cli, ['list-baselines']); assert r.exit_code == 0, r.output")
PLAIN = ("from relocbench.registry import list_baselines; "
         "rows = [(c.name, c.parameter_count(), c.description()) for c in list_baselines()]; assert rows")


def _median_s(code: str, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    fast = _median_s(FAST, args.repeat)
    plain = _median_s(PLAIN, args.repeat)
    print("| listing | median wall time (s) | vs plain |")
    print("| --- | ---: | ---: |")
    print(f"| list-baselines (committed table) | {fast:.2f} | {plain / fast:.1f}x faster |")
    print(f"| plain: import the zoo, build every model | {plain:.2f} | 1.0x |")


if __name__ == "__main__":
    main()
