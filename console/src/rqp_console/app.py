"""The console's web application, assembled: settings, the guard, the blueprints.

Every page is a small HTML document plus its own script module (``static/NAME.js``, importing the
shared ``static/console.js`` and friends) and ``console.css`` from the package's ``static/``
folder -- nothing fetched from anywhere else, no inline script or style -- and updates itself by
polling the JSON endpoints every ``RQP_CONSOLE_REFRESH`` seconds. ``guard.Guard`` applies the
login, CSRF, host and header rules to all of it; ``routes`` holds a blueprint per group of pages.
"""

from __future__ import annotations

from flask import Flask, Response, request

from .auth import Credentials
from .guard import Guard
from .routes import actions, audit, auth, errors, fleet, vms, workloads
from .state import Console
from .strict_json import StrictJSONProvider
from .views import Site

__all__ = ["MAX_REQUEST_BYTES", "SCRIPT_MIMETYPE", "Console", "create_app"]

#: the largest request body accepted (a login form or an action's confirmation is far smaller)
MAX_REQUEST_BYTES = 64 * 1024
#: what the script modules are served as: a browser runs a module only under a JavaScript type
SCRIPT_MIMETYPE = "text/javascript"


def create_app(c: Console, credentials: Credentials, secret_key: bytes) -> Flask:
    app = Flask(__name__)
    app.json = StrictJSONProvider(app)  # never NaN/Infinity, which no browser reads as JSON
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    site = Site(c, Guard(app, c.console, secret_key))
    app.after_request(_scripts_as_javascript)
    app.register_blueprint(errors.blueprint(site))
    app.register_blueprint(auth.blueprint(site, credentials))
    for group in (workloads, fleet, vms, audit, actions):
        app.register_blueprint(group.blueprint(site))
    return app


def _scripts_as_javascript(response: Response) -> Response:
    """The static ``.js`` files as JavaScript whatever the host's MIME table says (with ``nosniff``
    a module served as ``text/plain`` would not run)."""
    if request.endpoint == "static" and request.path.endswith(".js"):
        response.mimetype = SCRIPT_MIMETYPE
    return response
