"""sage-node: a Waggle node's data path on this machine (the only module that prints errors)."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from . import __version__, appspec, control, node, views
from .config import NodeConfig, load_config
from .errors import NodeError
from .parts import Layout
from .plugins import PluginRequest, parse_env, read_env_file
from .query import rfc3339nano
from .skeleton import new_app
from .store import Store

PROG = "sage-node"
DESCRIPTION = """\
A Waggle node's data path on this machine, made of the real parts: RabbitMQ configured as the
Waggle Edge Stack configures it, Redis as the app-meta cache, the real wes-data-sharing-service,
plugins in Docker with the environment and mounts a WES plugin gets, and a local data API that
sage_data_client.query(..., endpoint=URL) reads. Plugin verbs are pluginctl's.
"""
EXAMPLES = """\
examples:
  sage-node up                         # start the node (RabbitMQ, Redis, data services)
  sage-node new hello && cd hello      # a new app: sage.yaml, Dockerfile, main.py ...
  sage-node run .                      # build and run it, streaming its log
  sage-node data --name 'hello.*'      # what it published
  sage-node down                       # stop everything

config: /etc/sage-node/config.yaml, ~/.config/sage-node/config.yaml (or $SAGE_NODE_CONFIG)
exit codes: 0 ok, 1 failed, 2 bad input, 130 interrupted; run exits with the plugin's code
"""


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


# ---------------------------------------------------------------- verbs

def cmd_up(config: NodeConfig, args: argparse.Namespace) -> int:
    node.up(config, progress=_say)
    status = node.status(config)
    if args.json:
        _print_json(status)
    else:
        print(f"sage-node is up: node {status['node_id']} (VSN {status['vsn']}); plugins reach "
              f"the broker at {status['broker']['host']}:{status['broker']['port']}; "
              f"data API {status['data_api']}")
    return 0


def cmd_down(config: NodeConfig, args: argparse.Namespace) -> int:
    node.down(config, progress=_say, remove_plugins=lambda: control.remove_all(config))
    print("sage-node is down")
    return 0


def cmd_status(config: NodeConfig, args: argparse.Namespace) -> int:
    status = node.status(config)
    if args.json:
        _print_json(status)
        return 0
    if not status["parts"]:
        print("sage-node is down (start it: sage-node up)")
        return 0
    print(f"sage-node is {'up' if status['up'] else 'NOT fully up'}: node {status['node_id']} "
          f"(VSN {status['vsn']}), runner {status['runner']}, since {status['started']}")
    rows = [["PART", "STATE", "PID", "LISTENS"]] + [
        [p["name"], "running" if p["running"] else "stopped", str(p["pid"] or "-"),
         " ".join(p["listens"])] for p in status["parts"]]
    print(control.tabwrite(rows), end="")
    print(f"data API:      {status['data_api']}")
    print(f"broker:        {status['broker']['host']}:{status['broker']['port']} "
          "(plugins log in as plugin/plugin)")
    print(f"management UI: {status['management_url']} (user admin; password in "
          f"{status['secrets']})")
    print(f"uploads:       {status['uploads']}")
    return 0


def _request(args: argparse.Namespace) -> PluginRequest:
    env_items = list(args.env or [])
    if args.env_from:
        env_items += read_env_file(Path(args.env_from))
    return PluginRequest(image=args.image, args=tuple(args.plugin_args), name=args.name,
                         env=parse_env(env_items), entrypoint=args.entrypoint)


def cmd_build(config: NodeConfig, args: argparse.Namespace) -> int:
    ref = control.build(config, Path(args.dir), list(args.plugin_args), sys.stderr.buffer)
    print(ref)
    return 0


def cmd_run(config: NodeConfig, args: argparse.Namespace) -> int:
    def scheduled(name: str) -> None:
        print(f"Scheduled the plugin {name} successfully ", flush=True)
    return control.run(config, _request(args), out=sys.stdout.buffer, progress=sys.stderr.buffer,
                       on_scheduled=scheduled)


def cmd_deploy(config: NodeConfig, args: argparse.Namespace) -> int:
    launched = control.launch(config, _request(args), verb="deploy", progress=sys.stderr.buffer,
                              replace=args.force_to_update)
    name = launched.spec.name
    print(f"Launched the plugin {name} successfully ")
    print(f"You may check the log: {PROG} logs {name}")
    print(f"To terminate the job: {PROG} rm {name}")
    return 0


def cmd_ps(config: NodeConfig, args: argparse.Namespace) -> int:
    states = control.runner_for(config).states()
    if args.json:
        _print_json([{"name": s.name, "status": s.phase, "exit_code": s.exit_code,
                      "started": s.started.isoformat() if s.started else None,
                      "finished": s.finished.isoformat() if s.finished else None} for s in states])
    else:
        print(control.tabwrite(control.ps_rows(states, control.node_label(config))), end="")
    return 0


def cmd_logs(config: NodeConfig, args: argparse.Namespace) -> int:
    control.runner_for(config).logs(args.name, follow=args.follow, out=sys.stdout.buffer)
    return 0


def cmd_rm(config: NodeConfig, args: argparse.Namespace) -> int:
    control.remove(config, args.name)
    print(f"Terminated the plugin {args.name} successfully")
    return 0


def _open_store(config: NodeConfig) -> Store | None:
    path = Layout(config.state_dir).store
    return Store(path, max_bytes=config.data_max_mb * 1024 * 1024) if path.exists() else None


def cmd_data(config: NodeConfig, args: argparse.Namespace) -> int:
    views.since_bound(args.since)   # a bad --since is refused even with no data yet
    store = _open_store(config)
    if store is None:
        if not args.follow:
            return 0
        path = Layout(config.state_dir).store
        store = Store(path, max_bytes=config.data_max_mb * 1024 * 1024)

    def emit(record: Any) -> None:
        print(views.format_record(record, as_json=args.json), flush=True)
    after = views.last_id(store)
    for record in views.select(store, name=args.name, since=args.since):
        emit(record)
    if args.follow:
        views.follow(store, name=args.name, after_id=after, emit=emit)
    return 0


def cmd_uploads(config: NodeConfig, args: argparse.Namespace) -> int:
    found = views.uploads(Layout(config.state_dir), _open_store(config))
    if args.json:
        _print_json([u.as_json() for u in found])
        return 0
    rows = [["TIMESTAMP", "TASK", "TAG", "FILE", "SIZE", "PATH"]] + [
        [rfc3339nano(u.timestamp), u.task, u.tag, u.filename, str(u.size),
         str(u.directory / "data")] for u in found]
    print(control.tabwrite(rows), end="")
    return 0


def cmd_new(config: NodeConfig, args: argparse.Namespace) -> int:
    path = new_app(args.name, parent=Path(args.dir), version=args.version,
                   base_image=config.plugin_base_image)
    print(f"created {path}")
    print(f"next: cd {path} && {PROG} check . && {PROG} run .")
    return 0


def cmd_check(config: NodeConfig, args: argparse.Namespace) -> int:
    problems = appspec.check_app(Path(args.dir), namespace=args.namespace)
    if args.json:
        _print_json({"ok": not problems, "problems": problems})
    elif problems:
        for problem in problems:
            _say(f"{PROG}: check: {problem}")
    else:
        print(f"{args.dir}: ok (the ECR's sage.yaml rules; Dockerfile present)")
    return 1 if problems else 0


# ---------------------------------------------------------------- parser

def _verb(sub: Any, name: str, func: Callable[..., int], summary: str, example: str,
          json_flag: bool = False) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        name, help=summary, description=summary, epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(func=func)
    if json_flag:
        parser.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def _plugin_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", "--name", help="plugin name (lower-case letters, digits, '-')")
    parser.add_argument("-e", "--env", action="append", metavar="K=V",
                        help="environment variable (repeatable; WES's own variables win)")
    parser.add_argument("--env-from", metavar="FILE", help="KEY=VALUE lines")
    parser.add_argument("--entrypoint", help="command to run instead of the image's")
    parser.add_argument("image", metavar="IMAGE|DIR", help="an image, or an app folder to build")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION, epilog=EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("--debug", action="store_true", help="log details; tracebacks on errors")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    _verb(sub, "up", cmd_up, "start the node and wait until every part is ready",
          f"{PROG} up && {PROG} status", json_flag=True)
    _verb(sub, "down", cmd_down, "stop the node's plugins and every part", f"{PROG} down")
    _verb(sub, "status", cmd_status, "what runs, where it listens, the data API's URL",
          f"{PROG} status --json | jq -r .data_api", json_flag=True)
    p = _verb(sub, "build", cmd_build, "build an app folder's image; prints its reference "
              "(docker output on stderr)", f"{PROG} run -n hello $({PROG} build ./hello)")
    p.add_argument("dir", metavar="DIR")
    p = _verb(sub, "run", cmd_run, "run a plugin in the foreground: stream its log, exit with "
              "its exit code, remove it (also on Ctrl-C)",
              f"{PROG} run -n hello -e GREETING=hi ./hello -- --value 3")
    _plugin_options(p)
    p = _verb(sub, "deploy", cmd_deploy, "start a plugin in the background",
              f"{PROG} deploy -n hello ./hello && {PROG} logs -f hello")
    _plugin_options(p)
    p.add_argument("--force-to-update", action="store_true",
                   help="replace a plugin of the same name")
    _verb(sub, "ps", cmd_ps, "list the node's plugins (pluginctl's table)", f"{PROG} ps",
          json_flag=True)
    p = _verb(sub, "logs", cmd_logs, "print a plugin's log", f"{PROG} logs -f hello")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing until it ends")
    p.add_argument("name", metavar="NAME")
    p = _verb(sub, "rm", cmd_rm, "stop and remove a plugin", f"{PROG} rm hello")
    p.add_argument("name", metavar="NAME")
    p = _verb(sub, "data", cmd_data, "the node's data (every message that reached data.topic), "
              "oldest first", f"{PROG} data --name 'env.*' --since 10m --json", json_flag=True)
    p.add_argument("--name", metavar="PATTERN",
                   help="measurement name; with * or | a regular expression, as the data API's")
    p.add_argument("--since", metavar="DUR", help="only the last DUR (30s, 10m, 2h, 1d)")
    p.add_argument("-f", "--follow", action="store_true", help="then print new data as it comes")
    _verb(sub, "uploads", cmd_uploads, "files plugins uploaded, with their metadata",
          f"{PROG} uploads --json", json_flag=True)
    p = _verb(sub, "new", cmd_new, "write a new app: sage.yaml, Dockerfile, main.py, "
              "requirements.txt, ecr-meta/", f"{PROG} new hello-world --version 0.1.0")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--version", default="0.1.0", help="x.y.z (default 0.1.0)")
    p.add_argument("--dir", default=".", help="where to create it (default: here)")
    p = _verb(sub, "check", cmd_check, "check an app folder as the Edge Code Repository would "
              "(its sage.yaml rules and messages) and that it builds (Dockerfile)",
              f"{PROG} check ./hello --namespace myuser", json_flag=True)
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--namespace", help="your portal user name (the portal submits with it)")
    return parser


def _split_plugin_args(argv: list[str]) -> tuple[list[str], list[str]]:
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []


def _on_term(_sig: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    own, plugin_args = _split_plugin_args(argv)
    parser = build_parser()
    args = parser.parse_args(own)
    if plugin_args and args.verb not in ("run", "deploy", "build"):
        parser.error(f"{args.verb} takes no arguments after --")
    args.plugin_args = plugin_args
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(name)s: %(message)s")
    logging.getLogger("pika").setLevel(logging.DEBUG if args.debug else logging.CRITICAL)
    signal.signal(signal.SIGTERM, _on_term)
    try:
        config = load_config()
        code: int = args.func(config, args)
        return code
    except NodeError as exc:
        if args.debug:
            traceback.print_exc()
        _say(f"{PROG}: {args.verb}: {exc.message}")
        if exc.hint:
            _say(f"  hint: {exc.hint}")
        return exc.exit_code
    except KeyboardInterrupt:
        _say(f"{PROG}: {args.verb}: interrupted")
        return 130
    except BrokenPipeError:
        sys.stderr.close()   # output piped to a reader that stopped (head): nothing to report
        return 0


if __name__ == "__main__":
    sys.exit(main())

