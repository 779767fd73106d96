"""The gunicorn entry point of a local Keystone (imported inside the Keystone process only)."""

from __future__ import annotations

import sys


def __getattr__(name: str):  # noqa: ANN202 - load Keystone only when gunicorn asks for the app
    if name == "application":
        # Keystone's WSGI module parses sys.argv as its own command line; gunicorn's flags
        # would make it exit.
        sys.argv = sys.argv[:1]
        from keystone.wsgi.api import application

        return application
    raise AttributeError(name)
