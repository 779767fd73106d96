"""`sage-image localcloud up|down`: real local Glance sites for the demo and the tests."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..cli_common import add_command, add_json_flag
from ..console import Console
from ..folders import make_folder
from .cloud import DEMO_CLOUDS, SiteSpec, load_cloud, start_cloud


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "localcloud", help="start/stop local Glance sites (demo and tests)",
                    example="sage-image localcloud up --dir /tmp/sites && "
                            "export OS_CLIENT_CONFIG_FILE=/tmp/sites/clouds.yaml")
    verbs = p.add_subparsers(dest="verb", metavar="up|down")
    verbs.required = True
    up = add_command(verbs, "up", help="start real Glance servers and write DIR/clouds.yaml",
                     example="sage-image localcloud up --dir /tmp/sites --cloud chi-uc "
                             "--keystone-cloud chi-tacc")
    up.add_argument("--dir", type=Path, required=True, help="where data, logs and clouds.yaml go")
    up.add_argument("--cloud", action="append", default=[], metavar="NAME",
                    help=f"a Glance site without Keystone (default: {', '.join(DEMO_CLOUDS)})")
    up.add_argument("--keystone-cloud", action="append", default=[], metavar="NAME",
                    help="a Glance site behind a real Keystone, reached by application credential")
    add_json_flag(up)
    up.set_defaults(func=cmd_up)
    down = add_command(verbs, "down", help="stop the servers started with 'up --dir DIR'",
                       example="sage-image localcloud down --dir /tmp/sites")
    down.add_argument("--dir", type=Path, required=True)
    down.set_defaults(func=cmd_down)


def cmd_up(args: argparse.Namespace, console: Console) -> int:
    plain = args.cloud or ([] if args.keystone_cloud else list(DEMO_CLOUDS))
    specs = [SiteSpec(c) for c in plain] + [SiteSpec(c, keystone=True) for c in args.keystone_cloud]
    make_folder(args.dir, option="--dir")  # a bad --dir is refused before anything starts
    console.info(f"starting {len(specs)} local Glance site(s) and their object store (Swift) "
                 f"in {args.dir} ...")
    cloud = start_cloud(args.dir, specs)
    if console.json_mode:
        console.json({"clouds_yaml": str(cloud.clouds_yaml),
                      "servers": [{"name": s.name, "kind": s.kind, "url": s.url, "pid": s.pid}
                                  for s in cloud.servers]})
        return 0
    console.table(["NAME", "KIND", "URL", "PID"],
                  [(s.name, s.kind, s.url, s.pid) for s in cloud.servers])
    console.info(f"\nexport OS_CLIENT_CONFIG_FILE={cloud.clouds_yaml}\n"
                 f"stop them with: sage-image localcloud down --dir {args.dir}")
    return 0


def cmd_down(args: argparse.Namespace, console: Console) -> int:
    cloud = load_cloud(args.dir)
    cloud.stop()
    console.info(f"stopped {len(cloud.servers)} local server(s) from {args.dir}")
    return 0
