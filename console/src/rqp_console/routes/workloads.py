"""The workloads: the list and one workload's page, and the JSON they poll (the list, one
workload's detail, its failures grouped by reason, one record's status).

Answers are memoized for about a second (``TtlCache``), so any number of open tabs costs Redis
what one does.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Response, jsonify, redirect, url_for

from rqp.ledger import SUBMISSIONS, Ledger, Meta, Refusal, WorkloadKeys, read_refusal, refusals
from rqp.status import REFUSED, refusal_shown

from ..failures import failures_view, record_view
from ..fleet import job_workers, read_workers
from ..views import Site, json_error, workload_id
from ..workload_page import workload_detail
from ..workloads import list_workloads
from .fleet import TTL_FLEET

__all__ = [
    "SUBMITTED_SHOWN",
    "TTL_DETAIL",
    "TTL_FAILURES",
    "TTL_LIST",
    "WORKLOADS_SHOWN",
    "blueprint",
    "refusal_json",
    "refusal_text",
]

#: seconds each kind of answer is reused for
TTL_LIST = 1.0
TTL_DETAIL = 1.0
TTL_FAILURES = 3.0
#: submissions waiting for a scheduler, listed on the workloads page
SUBMITTED_SHOWN = 50
#: workloads listed (newest first)
WORKLOADS_SHOWN = 100


def blueprint(site: Site) -> Blueprint:
    bp = Blueprint("workloads", __name__)
    c = site.c

    @bp.get("/")
    def index() -> Any:
        return redirect(url_for("workloads.workloads_page"))

    @bp.get("/workloads")
    def workloads_page() -> str:
        return site.page("workloads")

    @bp.get("/workloads/<wid>")
    def workload_page(wid: str) -> str:
        return site.page("workload", workload=workload_id(wid))

    @bp.get("/api/workloads")
    def api_workloads() -> Response:
        def compute() -> dict[str, Any]:
            now = time.time()
            summaries = c.opener.summary if c.opener is not None else None
            unconfirmed = c.opener.unconfirmed if c.opener is not None else None
            rows = list_workloads(
                c.r, c.history, limit=WORKLOADS_SHOWN, now=now, summaries=summaries, unconfirmed=unconfirmed
            )
            if c.opener is not None:  # one workload's junk manifest.json: that row says so, the rest as ever
                for row in rows:
                    if row["verified"] is False and (why := c.opener.unreadable.get(row["id"])):
                        row["unreadable"] = why
            waiting = [
                x.decode() if isinstance(x, bytes) else str(x) for x in c.r.lrange(SUBMISSIONS, 0, SUBMITTED_SHOWN - 1)
            ]
            return {"workloads": rows, "submitted": waiting, "refused": refused_rows(), "now": now}

        return jsonify(c.cache.get("workloads", TTL_LIST, compute))

    @bp.get("/api/workloads/<wid>")
    def api_workload(wid: str) -> Response:
        wid = workload_id(wid)

        def compute() -> dict[str, Any] | None:
            workers = c.cache.get("workers", TTL_FLEET, lambda: read_workers(c.r))
            return workload_detail(
                c.r,
                wid,
                history=c.history,
                workers_by_job=job_workers(workers),
                settings=c.settings,
                mq=c.mq,
                manifests=c.manifests,
                opener=c.opener,
                operators=c.operators,
                submitters=c.submitters,
            )

        detail = c.cache.get(("workload", wid), TTL_DETAIL, compute)
        if detail is None:
            refusal = shown(wid)
            if refusal is not None:  # the scheduler would not run it: say why, not "not known"
                response = jsonify({"error": refusal_text(refusal), "state": REFUSED, "refused": refusal_json(refusal)})
                response.status_code = 404
                return response
            return json_error(404, f"workload {wid} is not known to Redis (not started yet, or deleted)")
        return jsonify({**detail, "actions_enabled": c.actions is not None})

    def shown(wid: str) -> Refusal | None:
        """The scheduler's refusal of ``wid`` as ``rqp status`` shows it (compared with the manifest
        in the blob store when the console can read it)."""
        store = c.manifests.store
        return refusal_shown(c.r, store, wid) if store is not None else read_refusal(c.r, wid)

    def refused_rows() -> list[dict[str, Any]]:
        """The refused workloads Redis holds no state of, newest first (at most ``SUBMITTED_SHOWN``)."""
        found = sorted(refusals(c.r).values(), key=lambda x: x.at, reverse=True)
        rows = []
        for refusal in found[:SUBMITTED_SHOWN]:
            if not Ledger(c.r, refusal.workload).exists() and shown(refusal.workload) is not None:
                rows.append(refusal_json(refusal))
        return rows

    @bp.get("/api/workloads/<wid>/failures")
    def api_failures(wid: str) -> Response:
        wid = workload_id(wid)
        # keyed by the state too: the look a workload ends with is taken as it ends, so the page
        # never shows a finished workload's failures counted while it still ran (one HGET)
        state = c.r.hget(WorkloadKeys(wid).meta, Meta.STATE)
        return jsonify(c.cache.get(("failures", wid, state), TTL_FAILURES, lambda: failures_view(c.r, wid, c.opener)))

    @bp.get("/api/workloads/<wid>/records/<int:rid>")
    def api_record(wid: str, rid: int) -> Response:
        wid = workload_id(wid)
        return jsonify(record_view(c.r, wid, rid, c.opener))

    return bp


def refusal_json(refusal: Refusal) -> dict[str, Any]:
    return {"id": refusal.workload, "reason": refusal.reason, "at": refusal.at, "by": refusal.by, "verified": False}


def refusal_text(refusal: Refusal) -> str:
    """The workload page's line for a refused workload: the reason whole (it names the fix)."""
    return (
        f"refused by the scheduler: {refusal.reason} -- as Redis holds it (unverified); fix that, then "
        f"'rqp submit {refusal.workload}'"
    )
