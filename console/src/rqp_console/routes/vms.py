"""The VMs page: every VM's CPU, memory, disk and network over a window, from the metrics
logger's store (``RQP_BLOB_URL``), with the workloads that ran marked on the charts."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from ..views import Site, json_error
from ..vms import WINDOWS, vms_view

__all__ = ["DEFAULT_WINDOW", "TTL_VMS", "blueprint"]

#: seconds a window's answer is reused for (samples arrive every 30 s or so)
TTL_VMS = 10.0
DEFAULT_WINDOW = "1h"


def blueprint(site: Site) -> Blueprint:
    bp = Blueprint("vms", __name__)
    c = site.c

    @bp.get("/vms")
    def vms_page() -> str:
        return site.page("vms", windows=list(WINDOWS))

    @bp.get("/api/vms")
    def api_vms() -> Response:
        window = request.args.get("window", DEFAULT_WINDOW)
        if window not in WINDOWS:
            return json_error(400, f"window must be one of {', '.join(WINDOWS)}")
        samples = c.samples
        if samples is None:
            return json_error(503, "no metrics store: set RQP_BLOB_URL to where rqp-metrics-logger stores its samples")
        return jsonify(c.cache.get(("vms", window), TTL_VMS, lambda: vms_view(samples, c.r, window)))

    return bp
