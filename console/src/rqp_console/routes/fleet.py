"""The fleet page: hosts, processors (with their sandbox protections), workers, rejected jobs."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from ..fleet import fleet_view
from ..views import Site

__all__ = ["TTL_FLEET", "blueprint"]

#: seconds the fleet's answer (and the worker list a workload's page reads) is reused for
TTL_FLEET = 1.5


def blueprint(site: Site) -> Blueprint:
    bp = Blueprint("fleet", __name__)
    c = site.c

    @bp.get("/fleet")
    def fleet_page() -> str:
        return site.page("fleet")

    @bp.get("/api/fleet")
    def api_fleet() -> Response:
        return jsonify(c.cache.get("fleet", TTL_FLEET, lambda: fleet_view(c.r, c.settings.rq_queue)))

    return bp
