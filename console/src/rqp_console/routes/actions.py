"""The console's only writes: pause, resume, cancel, retry (``..actions``), on the actions
Redis identity, confirmed by naming the workload, signed with the console's operator key on
behalf of the logged-in user.

``guard.Guard`` has already checked the POST's Origin and CSRF token before this runs.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify, request

from ..actions import ACTIONS, NO_OPERATOR_KEY, perform
from ..views import Site, json_error, workload_id

__all__ = ["blueprint"]

log = logging.getLogger("rqp.console")


def blueprint(site: Site) -> Blueprint:
    bp = Blueprint("actions", __name__)
    c = site.c

    @bp.post("/api/workloads/<wid>/actions/<action>")
    def api_action(wid: str, action: str) -> Response:
        wid = workload_id(wid)
        if action not in ACTIONS:
            return json_error(404, f"unknown action {action!r}; one of {', '.join(ACTIONS)}")
        if c.actions is None:
            return json_error(
                403,
                "actions are off: start the console with RQP_CONSOLE_ACTIONS_REDIS_URL (a Redis user allowed to change workloads)",
            )
        if c.signer is None:
            return json_error(403, NO_OPERATOR_KEY)
        body = request.get_json(silent=True) or {}
        if body.get("confirm") != wid:
            return json_error(400, f'confirm the {action} by naming the workload: {{"confirm": "{wid}"}}')
        user = site.guard.user() or "?"
        result = perform(c.actions, c.signer, action, wid, user, c.opener)
        log.warning("action: %s %s by %s from %s: %s", action, wid, user, request.remote_addr, result)
        for key in (("workload", wid), "workloads", "audit"):
            c.cache.invalidate(key)  # the next refresh reads Redis again
        return jsonify({"ok": True, "action": action, "workload": wid, **result})

    return bp
