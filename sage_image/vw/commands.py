"""`sage-image vw k8s`: Kubernetes manifests for N Virtual Waggle nodes (and `--apply`)."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..catalog.model import load_catalog
from ..cli_common import add_catalog_flag, add_command, add_json_flag
from ..console import Console, Progress
from ..errors import SageImageError, UsageError
from . import k8s, validate
from .compose import Conversion, convert
from .model import (
    K8sRequest,
    check_key,
    check_nodes,
    check_prefix,
    check_storage_class,
    default_stack,
    kubernetes_config,
    parse_beehive,
    parse_node_id,
)

EXAMPLE = ("sage-image vw k8s --nodes 3 --beehive beehive.example.org "
           "--register-key private/register.pem --out vw-k8s")


def register(sub: argparse._SubParsersAction) -> None:
    vw = add_command(sub, "vw", help="Virtual Waggle outside a VM image (Kubernetes)",
                     example=EXAMPLE)
    vw_sub = vw.add_subparsers(dest="vw_command", metavar="COMMAND")
    vw_sub.required = True
    add_k8s(vw_sub)


def add_k8s(vw_sub: argparse._SubParsersAction) -> None:
    p = add_command(
        vw_sub, "k8s", example=EXAMPLE,
        help="write kustomize manifests for N independent Virtual Waggle nodes",
        description="Write kustomize-ready manifests for N Virtual Waggle nodes, one namespace "
                    "and node ID each (docs/virtual-waggle-k8s.md). Nothing touches a cluster "
                    "unless --apply is given.")
    p.add_argument("--nodes", type=int, default=1, metavar="N", help="number of nodes (default 1)")
    p.add_argument("--beehive", metavar="HOST",
                   help="Beehive's DNS name or IP address (needs --register-key); without it "
                        "the nodes run local-only, like waggle-node without private/register.pem")
    p.add_argument("--register-key", type=Path, metavar="FILE",
                   help="Beehive's registration key (becomes a Secret; never printed)")
    p.add_argument("--namespace-prefix", default="vw-node", metavar="P",
                   help="namespaces are P-<node id> (default vw-node)")
    p.add_argument("--first-node-id", default="1", metavar="HEX",
                   help="node IDs count up from this 16-hex-digit ID (default 0000000000000001)")
    p.add_argument("--storage-class", metavar="NAME",
                   help="keep broker data and playback media in PVCs of this StorageClass "
                        "(default: emptyDir, no PVC)")
    p.add_argument("--image-registry", metavar="HOST",
                   help="registry to pull the pinned images from (default: the catalog's)")
    p.add_argument("--from-compose", type=Path, metavar="FILE",
                   help="convert this Virtual Waggle docker-compose file instead of the "
                        "built-in stack, and explain each choice that differs from kompose")
    p.add_argument("--out", type=Path, default=Path("vw-k8s"), metavar="DIR",
                   help="directory to write (default ./vw-k8s)")
    p.add_argument("--apply", action="store_true",
                   help="then run kubectl apply -k DIR and wait until every node is ready")
    p.add_argument("--timeout", type=float, default=600, metavar="SECONDS",
                   help="--apply: give up waiting after this long (default 600)")
    add_catalog_flag(p)
    add_json_flag(p)
    p.set_defaults(func=cmd_k8s)


def build_request(args: argparse.Namespace) -> tuple[K8sRequest, Conversion | None]:
    """Every input check happens here, before anything is written."""
    catalog = load_catalog(args.catalog)
    kube = kubernetes_config(catalog)
    check_nodes(args.nodes)
    if (args.beehive is None) != (args.register_key is None):
        raise UsageError("--beehive and --register-key go together (a node registers with "
                         "Beehive using the key); give both, or neither for a local-only node")
    conversion = convert(args.from_compose) if args.from_compose else None
    return K8sRequest(
        nodes=args.nodes, kube=kube, source=catalog.sources["waggle-node"],
        stack=conversion.stack if conversion else default_stack(),
        beehive=parse_beehive(args.beehive) if args.beehive else None,
        register_key=check_key(args.register_key) if args.register_key else None,
        namespace_prefix=check_prefix(args.namespace_prefix),
        first_node_id=parse_node_id(args.first_node_id),
        storage_class=check_storage_class(args.storage_class) if args.storage_class else None,
        image_registry=args.image_registry,
        extra_env=conversion.env if conversion else (),
    ), conversion


def cmd_k8s(args: argparse.Namespace, console: Console) -> int:
    request, conversion = build_request(args)
    plan = k8s.plan(request)
    found = validate.problems(plan.objects(), storage_class=request.storage_class)
    if found:  # a bug of ours: refuse to write manifests we know to be wrong
        raise SageImageError(f"generated manifests fail {len(found)} check(s): {found[0]}")
    written = k8s.write(plan, args.out)
    if request.local_only:
        console.warn("no --beehive/--register-key: local-only nodes (no registration, no "
                     "shovels to Beehive)")
    applied: list[str] = []
    if args.apply:
        from .apply import apply

        with Progress(console, "vw k8s --apply") as progress:
            applied = apply(args.out, plan, timeout=args.timeout, on_step=progress.set_phase)
    report(console, args, plan, written, conversion, applied)
    return 0


def summary(args: argparse.Namespace, plan: k8s.Plan, written: list[Path],
            conversion: Conversion | None, applied: list[str]) -> dict[str, Any]:
    req = plan.request
    return {
        "ok": True, "out": str(args.out), "applied": bool(args.apply), "apply_steps": applied,
        "nodes": [{"namespace": n.node.namespace, "node_id": n.node.node_id} for n in plan.nodes],
        "objects": sum(len(n.objects) for n in plan.nodes),
        "files": [str(p) for p in written],
        "beehive": req.beehive.host if req.beehive else None,
        "local_only": req.local_only, "storage_class": req.storage_class,
        "waggle_node": {"url": req.source.url, "commit": req.source.commit},
        "from_compose": str(args.from_compose) if args.from_compose else None,
        "decisions": [asdict(d) for d in conversion.decisions] if conversion else [],
    }


def report(console: Console, args: argparse.Namespace, plan: k8s.Plan, written: list[Path],
           conversion: Conversion | None, applied: list[str]) -> None:
    data = summary(args, plan, written, conversion, applied)
    if console.json_mode:
        console.json(data)
        return
    if conversion:
        console.result(f"Converted {args.from_compose}; where this differs from kompose:")
        for d in conversion.decisions:
            console.result(f"{d.service}:\n  kompose: {d.kompose}\n  here:    {d.here}\n"
                           f"  why:     {d.why}")
        console.result("")
    nodes = data["nodes"]
    shown = nodes if len(nodes) <= 10 else nodes[:5]
    console.table(["NAMESPACE", "NODE ID"], [(n["namespace"], n["node_id"]) for n in shown])
    if len(nodes) > len(shown):
        console.result(f"... and {len(nodes) - len(shown)} more, up to {nodes[-1]['namespace']}")
    console.result(f"\nwrote {data['objects']} objects for {len(nodes)} node(s) to {args.out} "
                   f"(waggle-node {plan.request.source.commit[:12]})")
    if applied:
        console.result(f"applied and ready ({len(applied) - 1} rollouts and jobs)")
    else:
        console.result(f"deploy with: kubectl apply -k {args.out}")
