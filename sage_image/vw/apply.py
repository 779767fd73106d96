"""`vw k8s --apply`: hand the written tree to `kubectl apply -k` and wait until it is up.

Only ever run when asked; generation (k8s.py) never needs a cluster or kubectl.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import PreflightError
from ..runner import run
from .k8s import Plan


def kubectl_path() -> str:
    path = shutil.which("kubectl")
    if path is None:
        raise PreflightError("--apply needs kubectl on PATH, and there is none",
                             hint="install kubectl, or apply the tree later: kubectl apply -k DIR")
    return path


def wait_steps(plan: Plan) -> list[tuple[str, list[str]]]:
    """(label, kubectl arguments) of every wait, without --timeout."""
    steps = []
    for node in plan.nodes:
        ns = node.node.namespace
        for w in plan.stack:
            if w.kind == "Job":
                args = ["-n", ns, "wait", "--for=condition=complete", f"job/{w.name}"]
            else:
                args = ["-n", ns, "rollout", "status", f"{w.kind.lower()}/{w.name}"]
            steps.append((f"{ns}: {w.kind} {w.name}", args))
    return steps


def apply(out: Path, plan: Plan, *, timeout: float,
          on_step: Callable[[str], None] = lambda _: None) -> list[str]:
    """Apply, then wait for every rollout and Job of every node; returns the steps done."""
    kubectl = kubectl_path()
    deadline = time.monotonic() + timeout
    on_step(f"kubectl apply -k {out}")
    run([kubectl, "apply", "-k", str(out)], timeout=timeout)
    done = [f"applied {out}"]
    for label, args in wait_steps(plan):
        left = max(1, int(deadline - time.monotonic()))
        on_step(f"waiting for {label}")
        run([kubectl, *args, f"--timeout={left}s"], timeout=left + 30)
        done.append(f"ready: {label}")
    return done
