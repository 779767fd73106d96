"""Time reading and validating the shipped catalog (`load_catalog`), which every command does.

    .venv/bin/python bench/catalog_load.py [RUNS]       (default: 50)

Prints the median and the fastest of RUNS loads (after one warm-up, which lists the elements
and reads the check names once); results go to docs/benchmarks.md, "Catalog".
"""

from __future__ import annotations

import statistics
import sys
import time

from sage_image.catalog.model import load_catalog


def main(argv: list[str]) -> None:
    runs = int(argv[0]) if argv else 50
    load_catalog()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        load_catalog()
        times.append(time.perf_counter() - start)
    print(f"load_catalog: median {statistics.median(times) * 1000:.1f} ms, "
          f"fastest {min(times) * 1000:.1f} ms ({runs} runs)")


if __name__ == "__main__":
    main(sys.argv[1:])
