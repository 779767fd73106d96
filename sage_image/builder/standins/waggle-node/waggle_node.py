"""STAND-IN for waggle-node's waggle_node.py (upstream unreachable at build time).

Written for sage-image, not upstream code: the same command line, and for the commands the
image's checks run the same behaviour - `newplugin NAME` copies templates/<template> (found
next to this file) to plugin-NAME in the current directory and writes its sage.json; `report`
prints the two headed sections, each from `docker-compose exec rabbitmq rabbitmqctl ...`.
The others say that they are not available here.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

TEMPLATE_DIR = Path(sys.argv[0]).parent / "templates"


def fatal(message):
    print(message, file=sys.stderr)
    sys.exit(1)


def command_new_plugin(args):
    if re.match(r"[a-z0-9_-]+$", args.name) is None:
        fatal("plugin names can only contain lowercase letters, numbers, _ and -.")
    plugin_dir = Path(f"plugin-{args.name}")
    try:
        shutil.copytree(TEMPLATE_DIR / args.template, plugin_dir)
    except FileExistsError:
        fatal(f"warning: plugin directory {plugin_dir} already exists")
    sage = {"architecture": ["linux/amd64", "linux/arm64"], "description": "STAND-IN plugin",
            "id": 1000, "name": args.name, "namespace": "waggle", "version": "0.0.1"}
    (plugin_dir / "sage.json").write_text(json.dumps(sage, indent=4) + "\n")


def command_report(args):
    print("=== RabbitMQ Queue Status ===", flush=True)
    subprocess.run(["docker-compose", "exec", "rabbitmq", "rabbitmqctl", "list_queues"])
    print(flush=True)
    print("=== RabbitMQ Shovel Status ===", flush=True)
    subprocess.run(["docker-compose", "exec", "rabbitmq", "rabbitmqctl", "eval",
                    "rabbit_shovel_status:status()."])


def not_here(args):
    fatal(f"waggle-node {args.command}: not available in this stand-in")


def main():
    parser = argparse.ArgumentParser(description="STAND-IN waggle-node")
    parser.set_defaults(func=lambda args: parser.print_help())
    parser.add_argument("-p", "--project-name", default=os.path.basename(os.getcwd()))
    sub = parser.add_subparsers(dest="command")
    for name in ("up", "down", "logs"):
        sub.add_parser(name).set_defaults(func=not_here)
    sub.add_parser("report").set_defaults(func=command_report)
    build = sub.add_parser("build")
    build.add_argument("plugin_dir", type=Path)
    build.set_defaults(func=not_here)
    run = sub.add_parser("run")
    run.add_argument("plugin")
    run.set_defaults(func=not_here)
    new = sub.add_parser("newplugin")
    new.add_argument("-t", "--template", default="simple",
                     choices=[p.name for p in TEMPLATE_DIR.glob("*/")])
    new.add_argument("name")
    new.set_defaults(func=command_new_plugin)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
