"""Errors as one JSON line each, for every blueprint: rqp's own errors (a refused action is a
409), Redis refusing the console's user (403, pointing at the ACL rules), Redis not answering (503)."""

from __future__ import annotations

import redis
from flask import Blueprint, Response
from redis.exceptions import NoPermissionError

from rqp.errors import RqpError, WorkloadError

from ..views import Site, json_error

__all__ = ["blueprint"]

#: ``RqpError.exit_code`` of a refused action (``..actions.ActionRefused``)
REFUSED_EXIT_CODE = 7


def blueprint(site: Site) -> Blueprint:
    bp = Blueprint("errors", __name__)
    settings = site.c.settings

    @bp.app_errorhandler(RqpError)
    def rqp_error(exc: RqpError) -> Response:
        status = 409 if isinstance(exc, WorkloadError) or exc.exit_code == REFUSED_EXIT_CODE else 400
        return json_error(status, str(exc))

    @bp.app_errorhandler(NoPermissionError)
    def redis_denied(exc: NoPermissionError) -> Response:
        first = str(exc).split("\n")[0]
        return json_error(
            403, f"Redis refused the console's user: {first}; see the console's ACL rules in console/README.md"
        )

    @bp.app_errorhandler(redis.RedisError)
    def redis_error(exc: redis.RedisError) -> Response:
        first = str(exc).split("\n")[0]
        return json_error(503, f"Redis at {settings.redis_url_safe} did not answer ({first}); the page retries")

    return bp
