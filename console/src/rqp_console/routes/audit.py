"""The audit page: operators' signed requests on workloads, newest first (console and ``rqp`` CLI
alike), each marked verified (by whom) or unverified (why), with where the chain was cut."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from ..actions import audit_log
from ..views import Site

__all__ = ["TTL_AUDIT", "blueprint"]

#: seconds the audit log's answer is reused for (an action invalidates it at once)
TTL_AUDIT = 2.0


def blueprint(site: Site) -> Blueprint:
    bp = Blueprint("audit", __name__)
    c = site.c

    @bp.get("/audit")
    def audit_page() -> str:
        return site.page("audit")

    @bp.get("/api/audit")
    def api_audit() -> Response:
        return jsonify({"entries": c.cache.get("audit", TTL_AUDIT, lambda: audit_log(c.r, c.operators, c.submitters))})

    return bp
