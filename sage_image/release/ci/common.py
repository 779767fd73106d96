"""What the GitHub workflow and the Kubernetes Jobs share: the catalog's ci section, names
that are valid in both, the build command line, shell quoting and the container bootstrap."""

from __future__ import annotations

import re
from collections.abc import Iterable

from ...catalog.model import CI, Catalog
from ...errors import UsageError
from ..plan import ImageJob, ReleasePlan
from ..run import build_args

# What a bare Debian container lacks before scripts/setup can run (it needs git and a venv).
BOOTSTRAP_PACKAGES = ("ca-certificates", "git", "python3", "python3-venv")


def require_ci(catalog: Catalog) -> CI:
    if catalog.ci is None:
        raise UsageError(f"{catalog.path.name} has no 'ci' section (pinned images and actions)",
                         hint="copy the ci section of the shipped catalog.yaml")
    return catalog.ci


def slug(text: str) -> str:
    """`CHI@UC` -> `chi-uc`: usable in job ids, Kubernetes names, secret names (upper-cased)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def secret_names(site: str) -> tuple[str, str]:
    """Repository secrets holding a site's application credential (id, secret)."""
    base = slug(site).replace("-", "_").upper()
    return f"{base}_APPLICATION_CREDENTIAL_ID", f"{base}_APPLICATION_CREDENTIAL_SECRET"


def children(plan: ReleasePlan) -> set[str]:
    """Keys of images some other build starts from."""
    return {i.parent for i in plan.images if i.parent}


def build_argv(plan: ReleasePlan, image: ImageJob, out: str, cache: str) -> list[str]:
    return [".venv/bin/sage-image", *build_args(plan, image, out=out, cache=cache)]


def _quote(arg: str) -> str:
    """Shell-quote, but leave "$VAR/..." expandable (our own variables, never user text)."""
    if re.fullmatch(r'"\$\w+[\w@%+=:,./-]*"[\w@%+=:,./-]*', arg):
        return arg  # "$VAR/path" or "$VAR/path"/more: our own variables, expanded by the shell
    return arg if re.fullmatch(r"[\w@%+=:,./-]+", arg) else "'" + arg.replace("'", "'\\''") + "'"


def shell(argv: Iterable[str]) -> str:
    return " ".join(_quote(a) for a in argv)


def bootstrap_lines() -> list[str]:
    return ["export DEBIAN_FRONTEND=noninteractive",
            "apt-get update -qq",
            "apt-get install -y -qq --no-install-recommends " + " ".join(BOOTSTRAP_PACKAGES)]


def plan_graph(plan: ReleasePlan) -> dict[str, tuple[str, ...]]:
    """The plan's job graph in the shape `workflow_graph` and `k8s_graph` read back."""
    return {k: tuple(sorted(v)) for k, v in plan.graph().items()}
