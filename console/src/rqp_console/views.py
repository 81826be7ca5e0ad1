"""What every blueprint of the console shares: the page shell, a JSON error, a workload id from a URL.

Each page is the same HTML shell (``templates/base.html``) around its own template, filled by its
own script module; ``Site.page`` renders it with what every shell carries (the user, the CSRF
token, the refresh period, whether actions and decryption are on).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Response, abort, jsonify, render_template

from rqp.errors import WorkloadError
from rqp.workload import check_workload_id

from . import __version__
from .guard import Guard
from .state import Console

__all__ = ["Site", "json_error", "workload_id"]


@dataclass(frozen=True)
class Site:
    """The console and its guard, handed to each blueprint when the application is assembled."""

    c: Console
    guard: Guard

    def page(self, name: str, **extra: Any) -> str:
        """Page ``name`` (``templates/NAME.html``), which loads its script module ``static/NAME.js``."""
        c = self.c
        return render_template(
            f"{name}.html",
            page=name,
            user=self.guard.user(),
            csrf=self.guard.csrf_token(),
            refresh_ms=int(c.console.refresh_seconds * 1000),
            actions="on" if c.actions is not None else "off",
            decrypting="on" if c.opener is not None else "off",
            version=__version__,
            **extra,
        )


def workload_id(wid: str) -> str:
    """``wid`` when it is a well-formed workload id; otherwise the request ends in a 404."""
    try:
        return check_workload_id(wid)
    except WorkloadError:
        abort(404)


def json_error(status: int, message: str) -> Response:
    """``{"error": message}`` with ``status``: what every API refusal looks like."""
    response = jsonify({"error": message})
    response.status_code = status
    return response
