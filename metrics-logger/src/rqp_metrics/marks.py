"""Workload start/finish times drawn on the charts, so load can be read against the work.

Given on the command line (``--mark NAME=START[,END]``) or as a JSON file (``--workload-marks``)
in any of the shapes the rest of rqp is likely to produce::

    [{"name": "w1", "start": "2026-11-24T10:00:00Z", "end": "2026-11-24T10:20:00Z"}, ...]
    {"marks": [...]}                      # the same list under a key
    {"w1": {"start": ..., "end": ...}}    # by name; "started"/"finished" also accepted
    {"w1": ["2026-11-24T10:00:00Z", null]}

Times are ISO-8601 (UTC unless an offset is given) or epoch seconds; a missing end means the
workload had not finished.

Without either, ``rqp metrics report`` marks the workloads rqp itself recorded in Redis
(``redis_marks``: each one's ``started_at`` / ``finished_at``, as the console's VMs page does).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rqp.errors import ConfigError

from .sample import parse_ts

#: the newest workloads looked at for marks (one HMGET each, in one round trip)
REDIS_MARKS_LOOKED_AT = 200

__all__ = [
    "REDIS_MARKS_LOOKED_AT",
    "WorkloadMark",
    "collect_marks",
    "load_marks_file",
    "merge_marks",
    "parse_mark_arg",
    "redis_marks",
]

_START_KEYS = ("start", "started", "started_at", "start_time")
_END_KEYS = ("end", "finish", "finished", "finished_at", "end_time")
_NAME_KEYS = ("name", "workload", "workload_id", "id")


@dataclass(frozen=True)
class WorkloadMark:
    name: str
    start: datetime
    end: datetime | None = None


def _time(value: Any, what: str) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        return parse_ts(value)
    except (TypeError, ValueError, OverflowError, OSError):
        raise ConfigError(
            f"{what}: {value!r} is not a time; use ISO-8601 like 2026-11-24T10:00:00Z or epoch seconds"
        ) from None


def _first(d: dict, keys: tuple[str, ...]) -> Any:
    return next((d[k] for k in keys if k in d), None)


def _mark(name: str, start: Any, end: Any, where: str) -> WorkloadMark:
    s = _time(start, f"{where}: start of {name!r}")
    if s is None:
        raise ConfigError(f"{where}: workload {name!r} has no start time; give 'start' (ISO-8601)")
    e = _time(end, f"{where}: end of {name!r}")
    if e is not None and e < s:
        raise ConfigError(f"{where}: workload {name!r} ends before it starts ({end} < {start})")
    return WorkloadMark(name, s, e)


def marks_from_json(doc: Any, where: str) -> list[WorkloadMark]:
    if isinstance(doc, dict) and isinstance(doc.get("marks"), list):
        doc = doc["marks"]
    out: list[WorkloadMark] = []
    if isinstance(doc, list):
        for i, item in enumerate(doc):
            if not isinstance(item, dict):
                raise ConfigError(f"{where}: entry {i} is not an object with name/start/end")
            name = _first(item, _NAME_KEYS)
            out.append(
                _mark(
                    str(name) if name is not None else f"workload {i + 1}",
                    _first(item, _START_KEYS),
                    _first(item, _END_KEYS),
                    where,
                )
            )
    elif isinstance(doc, dict):
        for name, item in doc.items():
            if isinstance(item, dict):
                out.append(_mark(str(name), _first(item, _START_KEYS), _first(item, _END_KEYS), where))
            elif isinstance(item, (list, tuple)) and 1 <= len(item) <= 2:
                out.append(_mark(str(name), item[0], item[1] if len(item) > 1 else None, where))
            else:
                raise ConfigError(f"{where}: workload {name!r} must be {{'start':..,'end':..}} or [start, end]")
    else:
        raise ConfigError(f"{where}: expected a list of {{name, start, end}} or an object by workload name")
    return out


def load_marks_file(path: str | Path) -> list[WorkloadMark]:
    where = f"workload marks file {path}"
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"{where} cannot be read ({exc.strerror}); fix --workload-marks") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    return marks_from_json(doc, where)


def parse_mark_arg(text: str) -> WorkloadMark:
    """``NAME=START[,END]``."""
    name, sep, times = text.partition("=")
    if not sep or not name.strip() or not times.strip():
        raise ConfigError(
            f"--mark {text!r} must look like NAME=2026-11-24T10:00:00Z,2026-11-24T10:20:00Z (end optional)"
        )
    start, _, end = times.partition(",")
    return _mark(name.strip(), start.strip(), end.strip() or None, f"--mark {text!r}")


def collect_marks(files: Iterable[str] | None, args: Iterable[str] | None) -> list[WorkloadMark]:
    marks: list[WorkloadMark] = []
    for f in files or ():
        marks.extend(load_marks_file(f))
    for a in args or ():
        marks.append(parse_mark_arg(a))
    return sorted(marks, key=lambda m: m.start)


def redis_marks(r: Any, since: datetime, until: datetime, limit: int = REDIS_MARKS_LOOKED_AT) -> list[WorkloadMark]:
    """The workloads that ran inside [since, until], from rqp's own records in Redis (their
    ``started_at`` and ``finished_at``; a running one has no end)."""
    from rqp.ledger import Meta, WorkloadKeys, workloads  # noqa: PLC0415 - only when marks are read from Redis

    ids = workloads(r, newest_first=True, limit=limit)
    if not ids:
        return []
    pipe = r.pipeline(transaction=False)
    for wid in ids:
        pipe.hmget(WorkloadKeys(wid).meta, Meta.STARTED_AT, Meta.FINISHED_AT)
    out = []
    for wid, (started, finished) in zip(ids, pipe.execute(), strict=True):
        try:
            start = datetime.fromtimestamp(float(started), UTC) if started else None
            end = datetime.fromtimestamp(float(finished), UTC) if finished else None
        except (TypeError, ValueError, OverflowError, OSError):
            continue
        if start is None or start > until or (end is not None and end < since):
            continue
        out.append(WorkloadMark(wid, start, end if end is not None and end >= start else None))
    return sorted(out, key=lambda m: m.start)


def merge_marks(given: list[WorkloadMark], recorded: list[WorkloadMark]) -> list[WorkloadMark]:
    """The marks given on the command line, then the recorded ones of any other name."""
    names = {m.name for m in given}
    return sorted([*given, *(m for m in recorded if m.name not in names)], key=lambda m: m.start)
