"""The gunicorn entry point of a local Glance site, and its no-Keystone request context.

Imported inside the Glance server process only (`sage_image.localcloud.glance_app:application`).
"""

from __future__ import annotations

import sqlite3

from sqlalchemy import event
from sqlalchemy.engine import Engine


# SQLite under concurrent requests answers "database is locked" unless every transaction takes
# the write lock up front (BEGIN IMMEDIATE) and waits for it (busy_timeout): measured 188 of 200
# parallel rounds failing without this, 0 with it. The pysqlite driver must not BEGIN on its own.
# oslo.db emits a plain BEGIN unless conn.info says a transaction is open; class-level listeners
# run before its per-engine ones, so ours wins.
@event.listens_for(Engine, "connect")
def _sqlite_connect(dbapi_connection: object, record: object) -> None:
    if isinstance(dbapi_connection, sqlite3.Connection):
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA busy_timeout = 60000")


@event.listens_for(Engine, "begin")
def _sqlite_begin(connection: object) -> None:
    info = connection.info  # type: ignore[attr-defined]
    if connection.dialect.name == "sqlite" and "in_transaction" not in info:  # type: ignore[attr-defined]
        connection.exec_driver_sql("BEGIN IMMEDIATE")  # type: ignore[attr-defined]
        info["in_transaction"] = True


def context_filter_factory(global_conf: dict, **local_conf: str):  # noqa: ANN201 - paste API
    """Paste filter: every request acts as the admin of one project.

    The stock `unauthenticated-context` filter has no project and no roles, so image import
    fails (tasks.owner is NOT NULL) and `visibility=public` is refused; a site without Keystone
    still needs an owner for its images.
    """
    import glance.context
    from glance.api.middleware.context import BaseContextMiddleware

    project = local_conf.get("project_id", "sage-local")

    class LocalAdminContext(BaseContextMiddleware):
        def process_request(self, req):  # noqa: ANN001, ANN202 - webob API
            req.context = glance.context.RequestContext(
                user_id="local-admin", project_id=project, roles=["admin", "member", "reader"],
                is_admin=True)

    def _filter(app):  # noqa: ANN001, ANN202
        return LocalAdminContext(app)

    return _filter


def __getattr__(name: str):  # noqa: ANN202 - load Glance only when gunicorn asks for the app
    if name == "application":
        from glance.wsgi.api import application

        return application
    raise AttributeError(name)
