"""The node's data service (one of `sage-node up`'s parts): it keeps every message that
reaches data.topic in the store and answers the data API on loopback.

WES does this with node-influxdb-loader (consuming data.topic as `service` into InfluxDB) and
Beehive's data API. Here: a consumer thread, bound to data.topic with "#" before the API's
port opens (so a ready API means nothing published after it is missed), and a small HTTP
server for /api/v1/query. The standard library's server is enough for one local endpoint.

Run: SAGE_NODE_SERVICE_PASSWORD=... python -m sage_node.dataservice --store PATH --amqp-port N
--api-port N [--max-mb N]
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType

import pika
import pika.exceptions

from .query import QueryError, parse_query, render, run_query
from .store import BadMessage, Store, parse_message

log = logging.getLogger("sage_node.data")
QUEUE_BIND = ("data.topic", "#")
DOCS = "https://docs.waggle-edge.ai/docs/tutorials/accessing-data"


class Consumer(threading.Thread):
    def __init__(self, params: pika.ConnectionParameters, store_path: Path, max_bytes: int) -> None:
        super().__init__(name="consumer", daemon=True)
        self.params = params
        self.store_path = store_path
        self.max_bytes = max_bytes
        self.bound = threading.Event()
        self.stopping = threading.Event()

    def run(self) -> None:
        store = Store(self.store_path, max_bytes=self.max_bytes)
        while not self.stopping.is_set():
            try:
                self._consume(store)
            except pika.exceptions.AMQPError as exc:
                log.warning("broker connection lost (%s); reconnecting in 2 s", type(exc).__name__)
                time.sleep(2)

    def _consume(self, store: Store) -> None:
        connection = pika.BlockingConnection(self.params)
        try:
            channel = connection.channel()
            queue = channel.queue_declare("", exclusive=True).method.queue
            channel.queue_bind(queue, *QUEUE_BIND)
            log.info("consuming %s %r into %s", *QUEUE_BIND, self.store_path)
            self.bound.set()
            for method, _props, body in channel.consume(queue, inactivity_timeout=1):
                if self.stopping.is_set():
                    break
                if method is None:
                    continue
                try:
                    store.add(parse_message(body))
                except BadMessage as exc:
                    log.warning("not kept: %s: %r", exc, body[:200])
                channel.basic_ack(method.delivery_tag)
        finally:
            if connection.is_open:
                connection.close()


def make_handler(store_path: Path, max_bytes: int) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def send_response(self, code: int, message: str | None = None) -> None:
            # as Go's net/http: a Date header, no Server header
            self.log_request(code)
            self.send_response_only(code, message)
            self.send_header("Date", self.date_time_string())

        def log_message(self, format: str, *args: object) -> None:
            log.info("%s %s", self.address_string(), format % args)

        def do_GET(self) -> None:
            self.route()

        def do_POST(self) -> None:
            self.route()

        def route(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/api/v1/query":
                self.query()
            elif path == "/":
                self.send_response(307)
                self.send_header("Location", DOCS)
                self.end_headers()
            else:
                self.error(404, "404 page not found")

        def error(self, status: int, message: str) -> None:
            body = (message + "\n").encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def query(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(min(length, 4097)) if length else b""
            store = Store(store_path, max_bytes=max_bytes)
            try:
                records = run_query(store, parse_query(body))
            except QueryError as exc:
                log.info("%s %s", self.address_string(), exc.message)
                self.error(exc.status, exc.message)
                return
            finally:
                store.close()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Access-Control-Allow-Origin", "*")
            stamp = datetime.now().strftime("%Y%m%d%H%M%S")
            self.send_header("Content-Disposition",
                             f'attachment; filename="sage-download-{stamp}.ndjson"')
            self.end_headers()
            for line in render(records):
                self.wfile.write(line)

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sage_node.dataservice")
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--max-mb", type=int, default=256)
    parser.add_argument("--amqp-port", type=int, required=True)
    parser.add_argument("--api-port", type=int, required=True)
    parser.add_argument("--bind-timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s",
                        datefmt="%Y/%m/%d %H:%M:%S")
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    password = os.environ.get("SAGE_NODE_SERVICE_PASSWORD", "")
    params = pika.ConnectionParameters(
        "127.0.0.1", args.amqp_port, credentials=pika.PlainCredentials("service", password),
        heartbeat=30, client_properties={"connection_name": "sage-node-data"})
    max_bytes = args.max_mb * 1024 * 1024
    consumer = Consumer(params, args.store, max_bytes)
    consumer.start()
    if not consumer.bound.wait(args.bind_timeout):
        log.error("could not bind to data.topic within %.0f s", args.bind_timeout)
        return 1
    server = ThreadingHTTPServer(("127.0.0.1", args.api_port), make_handler(args.store, max_bytes))
    server.daemon_threads = True

    def on_term(_sig: int, _frame: FrameType | None) -> None:
        consumer.stopping.set()
        threading.Thread(target=server.shutdown, daemon=True).start()
    signal.signal(signal.SIGTERM, on_term)
    log.info("data API on http://127.0.0.1:%d/api/v1/query", args.api_port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
