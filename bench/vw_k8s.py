"""Time `sage-image vw k8s` generation (plan + YAML text, no disk, no cluster) for N nodes.

    .venv/bin/python bench/vw_k8s.py [N ...]       (default: 1 10 50 200)

Prints the median of 5 runs per N; results go to docs/benchmarks.md, "Virtual Waggle on
Kubernetes". The issue asks for N=50 under one second.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from sage_image.catalog.model import load_catalog
from sage_image.vw import k8s, validate
from sage_image.vw.model import K8sRequest, default_stack, parse_beehive

KEY = Path(__file__).parents[1] / "tests" / "vw" / "fixtures" / "private" / "register.pem"


def once(nodes: int) -> tuple[float, float, int]:
    catalog = load_catalog()
    request = K8sRequest(nodes=nodes, stack=default_stack(), kube=catalog.kubernetes,
                         source=catalog.sources["waggle-node"],
                         beehive=parse_beehive("beehive.example.org"), register_key=KEY)
    start = time.perf_counter()
    plan = k8s.plan(request)
    files = k8s.files(plan)
    generated = time.perf_counter() - start
    problems = validate.problems(plan.objects())
    checked = time.perf_counter() - start
    assert not problems, problems[:3]
    return generated, checked, len(files)


def main(argv: list[str]) -> None:
    sizes = [int(a) for a in argv] or [1, 10, 50, 200]
    print(f"{'N':>5}  {'generate (s)':>12}  {'+ checks (s)':>12}  files")
    for n in sizes:
        runs = [once(n) for _ in range(5)]
        print(f"{n:>5}  {statistics.median(r[0] for r in runs):>12.3f}  "
              f"{statistics.median(r[1] for r in runs):>12.3f}  {runs[0][2]}")


if __name__ == "__main__":
    main(sys.argv[1:])
