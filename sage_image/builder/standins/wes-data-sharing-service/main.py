"""STAND-IN for waggle-sensor/wes-data-sharing-service 0.14.0 (upstream unreachable at build time).

Written for sage-image, not upstream code. It behaves like upstream's main.py where a user or a
check can see it:
- options and environment variables, with the same defaults (every option reads one variable);
- at each connection: the same log lines, the `to-validator` and `to-beehive` fanout exchanges
  each with a durable queue of the same name bound to it, the `data.topic` topic exchange, the
  Prometheus counters served on METRICS_HOST:METRICS_PORT, a consumer with prefetch 1000;
- per message: rejected (not requeued) without app_id and user_id ("no pod uid"), when the body
  is not a wagglemsg ("bad data"), when a non-system user's app_id has no `app-meta.<id>` in
  Redis ("no app meta"), or an upload lacks what its URL needs ("bad upload message"); else the
  app meta, then node and vsn, are merged into meta, an `upload` value becomes its storage URL,
  and scope node/all goes to data.topic (transient), beehive/all to to-beehive (persistent),
  both with the measurement name as routing key;
- exit codes: 0 on Ctrl-C; an unreachable broker (10 attempts, 3 s apart) ends it with the
  exception's traceback and exit 1.
"""

import argparse
import json
import logging
import os
import threading
from contextlib import ExitStack
from functools import lru_cache
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pika
import pika.exceptions
import prometheus_client
import wagglemsg
from redis import Redis

log = logging.getLogger("Service")

NODE_SCOPES = ("node", "all")
BEEHIVE_SCOPES = ("beehive", "all")
STORAGE_URL = "https://storage.sagecontinuum.org/api/v1/data"
RECONNECT_REASONS = {
    pika.exceptions.AMQPHeartbeatTimeout: "connection heartbeat timeout. will reconnect...",
    pika.exceptions.StreamLostError: "connection reset by peer. will reconnect...",
    pika.exceptions.ConnectionBlockedTimeout: "connection blocked for too long. will reconnect...",
}

# (option, environment variable, default, type); help texts as upstream's.
OPTIONS = [
    ("--upload-publish-name", "UPLOAD_PUBLISH_NAME", "upload", str,
     "measurement name to publish uploads to"),
    ("--rabbitmq-host", "RABBITMQ_HOST", "wes-rabbitmq", str, "rabbitmq host"),
    ("--rabbitmq-port", "RABBITMQ_PORT", "5672", int, "rabbitmq port"),
    ("--rabbitmq-username", "RABBITMQ_USERNAME", "service", str, "rabbitmq username"),
    ("--rabbitmq-password", "RABBITMQ_PASSWORD", "service", str, "rabbitmq password"),
    ("--app-meta-cache-host", "APP_META_CACHE_HOST", "wes-app-meta-cache", str,
     "app meta cache host"),
    ("--app-meta-cache-port", "APP_META_CACHE_PORT", "6379", int, "app meta cache port"),
    ("--waggle-node-id", "WAGGLE_NODE_ID", "0000000000000000", str, "waggle node id"),
    ("--waggle-node-vsn", "WAGGLE_NODE_VSN", "W000", str, "waggle node vsn"),
    ("--metrics-host", "METRICS_HOST", "0.0.0.0", str, "metrics server host"),
    ("--metrics-port", "METRICS_PORT", "8080", int, "metrics server port"),
    ("--src-queue", "SRC_QUEUE", "to-validator", str, "source queue to process"),
    ("--dst-exchange-beehive", "DST_EXCHANGE_BEEHIVE", "to-beehive", str,
     "destination exchange for beehive"),
    ("--dst-exchange-node", "DST_EXCHANGE_NODE", "data.topic", str,
     "destination exchange for node"),
    ("--system-users", "SYSTEM_USERS", "", str,
     "space separated list of system users. system users do not update their meta against "
     "the app meta cache"),
]


class Rejected(Exception):
    """A message this service drops; the text is its log line."""


def parse_args():
    parser = argparse.ArgumentParser()
    parser.add_argument("--debug", action="store_true", help="enable verbose logging")
    for flag, env, default, kind, text in OPTIONS:
        value = os.getenv(env, default)
        # Upstream converts RABBITMQ_PORT itself (a bad value is a ValueError) and leaves the
        # other numbers to argparse (a bad value is a usage error, exit 2).
        if flag == "--rabbitmq-port":
            value = int(value)
        parser.add_argument(flag, default=value, type=kind, help=text)
    return parser.parse_args()


def app_meta_lookup(client):
    """Successful lookups are remembered (128 of them); misses are asked again next time."""
    @lru_cache(maxsize=128)
    def lookup(app_id):
        raw = client.get(f"app-meta.{app_id}")
        if raw is None:
            raise KeyError(app_id)
        return json.loads(raw)
    return lookup


def upload_url(msg):
    meta = msg.meta
    try:
        job, task, node = meta.get("job") or "sage", meta["task"], meta["node"]
        filename, plugin = meta["filename"], meta["plugin"]
    except KeyError as exc:
        raise Rejected(f"message missing fields for upload url: {exc}") from None
    image = plugin.rsplit("/", 1)[-1].split(":")
    if len(image) > 2:
        raise Rejected(f"invalid plugin image name: {plugin!r}")
    tag = image[1] if len(image) == 2 else "latest"
    return f"{STORAGE_URL}/{job}/sage-{task}-{tag}/{node}/{msg.timestamp}-{filename}"


class Metrics:
    def __init__(self, host, port):
        self.registry = prometheus_client.CollectorRegistry()

        def counter(name, text):
            return prometheus_client.Counter(name, text, registry=self.registry)
        self.total = counter("wes_data_service_messages_total", "Total number of messages handled.")
        self.rejected = counter("wes_data_service_messages_rejected_total",
                                "Total number of invalid messages.")
        self.to_node = counter("wes_data_service_messages_published_node_total",
                               "Total number of messages published to node.")
        self.to_beehive = counter("wes_data_service_messages_published_beehive_total",
                                  "Total number of messages published to beehive.")

        class Quiet(WSGIRequestHandler):
            def log_message(self, *args):
                pass
        self.server = make_server(host, port, prometheus_client.make_wsgi_app(self.registry),
                                  handler_class=Quiet)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        try:
            self.server.shutdown()
        finally:
            self.server.server_close()


class DataSharing:
    def __init__(self, args, lookup):
        self.args = args
        self.lookup = lookup
        self.system_users = args.system_users.split()
        self.system_meta = {"node": args.waggle_node_id, "vsn": args.waggle_node_vsn}
        self.metrics = None

    def parameters(self):
        a = self.args
        return pika.ConnectionParameters(
            host=a.rabbitmq_host, port=a.rabbitmq_port,
            credentials=pika.PlainCredentials(a.rabbitmq_username, a.rabbitmq_password),
            connection_attempts=10, retry_delay=3, heartbeat=10, blocked_connection_timeout=30,
            client_properties={"connection_name": "wes-data-sharing-service"})

    def serve_forever(self):
        while True:
            try:
                self.serve_one_connection()
            except tuple(RECONNECT_REASONS) as exc:
                log.info(RECONNECT_REASONS[type(exc)])

    def serve_one_connection(self):
        a = self.args
        params = self.parameters()
        with ExitStack() as stack:
            log.info("connecting consumer to rabbitmq server at %s:%d as %s.",
                     params.host, params.port, params.credentials.username)
            connection = stack.enter_context(pika.BlockingConnection(params))
            channel = stack.enter_context(connection.channel())
            log.info("setting up queues and exchanges.")
            for name in (a.src_queue, a.dst_exchange_beehive):
                channel.exchange_declare(name, exchange_type="fanout", durable=True)
                channel.queue_declare(name, durable=True)
                channel.queue_bind(name, name)
            channel.exchange_declare(a.dst_exchange_node, exchange_type="topic", durable=True)
            log.info("starting metric server on %s:%d.", a.metrics_host, a.metrics_port)
            self.metrics = Metrics(a.metrics_host, a.metrics_port)
            stack.callback(self.metrics.close)
            log.info("starting consumer on %s.", a.src_queue)
            channel.basic_qos(prefetch_count=1000)
            channel.basic_consume(a.src_queue, self.on_message, auto_ack=False)
            channel.start_consuming()

    def on_message(self, channel, method, properties, body):
        log.debug("handling delivery...")
        self.metrics.total.inc()
        try:
            msg = self.enrich(properties, body)
        except Rejected as exc:
            log.warning("reject msg: %s", exc)
            channel.basic_reject(method.delivery_tag, False)
            self.metrics.rejected.inc()
            return
        payload = wagglemsg.dump(msg)
        # Upstream publishes to these two names, whatever --dst-exchange-* say.
        if method.routing_key in NODE_SCOPES:
            log.debug("publishing message %r to node", msg)
            channel.basic_publish("data.topic", msg.name, payload, properties=pika.BasicProperties(
                delivery_mode=pika.DeliveryMode.Transient))
            self.metrics.to_node.inc()
        if method.routing_key in BEEHIVE_SCOPES:
            log.debug("publishing message %r to beehive", msg)
            channel.basic_publish("to-beehive", msg.name, payload, properties=pika.BasicProperties(
                delivery_mode=pika.DeliveryMode.Persistent))
            self.metrics.to_beehive.inc()
        channel.basic_ack(method.delivery_tag)

    def enrich(self, properties, body):
        app_id, user_id = properties.app_id, properties.user_id
        if app_id is None and user_id is None:
            raise Rejected(f"no pod uid: {body!r}")
        try:
            msg = wagglemsg.load(body)
        except Exception:
            raise Rejected(f"bad data: {body!r}") from None
        if user_id not in self.system_users:
            try:
                msg.meta.update(self.lookup(app_id))
            except KeyError:
                raise Rejected(f"no app meta: {app_id!r} {msg!r}") from None
        msg.meta.update(self.system_meta)
        if msg.name == self.args.upload_publish_name:
            try:
                url = upload_url(msg)
            except Rejected:
                raise Rejected(f"bad upload message: {msg!r}") from None
            msg = wagglemsg.Message(timestamp=msg.timestamp, name=msg.name, meta=msg.meta,
                                    value=url)
        return msg


def main():
    args = parse_args()
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(asctime)s %(message)s", datefmt="%Y/%m/%d %H:%M:%S")
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    lookup = app_meta_lookup(Redis(host=args.app_meta_cache_host, port=args.app_meta_cache_port))
    DataSharing(args, lookup).serve_forever()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
