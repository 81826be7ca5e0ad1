"""Strict JSON for every record read and every result or failure written (the README's
"Records and results" rules): UTF-8 only, nesting bounded without recursion, no NaN or Infinity
either way, one-line ``JSONRejected`` reasons instead of exceptions from deep inside ``json``.

The code lives in ``rqp.sandbox._jsonsafe`` because the script host, which imports nothing but
its own directory and the standard library, decodes records and encodes results with it too.
"""

from __future__ import annotations

import json

from .sandbox._jsonsafe import MAX_JSON_DEPTH, JSONRejected, depth_exceeds, dumps, loads, nan_path

__all__ = [
    "MAX_JSON_DEPTH",
    "ROW_MEMBERS",
    "JSONRejected",
    "depth_exceeds",
    "dumps",
    "loads",
    "nan_path",
    "noncanonical_number",
    "result_line",
]

#: the members of a results line as rqp writes one (a result, with the data's own id under
#: ``--id-field``), or rewrites one whose result was not strict JSON
ROW_MEMBERS = (frozenset({"id", "result"}), frozenset({"id", "key", "result"}), frozenset({"id", "error"}))


def result_line(line: bytes, max_depth: int = MAX_JSON_DEPTH) -> bytes:
    """A results line as ``rqp results`` prints it: the line itself when it is strict JSON, else a
    line that is, naming the record and why (a script host is untrusted: whatever it sent, the
    output stays valid JSON Lines)."""
    try:
        doc = loads(line, max_depth)
    except JSONRejected as exc:
        reason = str(exc)
    else:
        if isinstance(doc, dict) and "id" in doc:
            if frozenset(doc) in ROW_MEMBERS:
                return line
            extra = ", ".join(sorted(set(doc) - {"id", "key", "result"})) or "a result and an error"
            line_id = doc["id"] if type(doc["id"]) is int else None
            # a member the record's leaf does not cover (ninth review, G3): never shown as a result
            return dumps({"id": line_id, "error": f"results line has members rqp never writes ({extra[:80]})"}).encode()
        reason = "not an object with an id"
    head = line[:40].split(b",", 1)[0]
    rid = head[6:] if head.startswith(b'{"id":') else b""
    doc = {"id": int(rid) if rid.isdigit() and len(rid) < 20 else None, "error": f"result is not valid JSON: {reason}"}
    return dumps(doc).encode()


def noncanonical_number(text: str | bytes) -> tuple[str, str] | None:
    """The first number literal in strict JSON ``text`` (already read by ``loads``) that rqp would
    have written otherwise, with rqp's form -- ``("0.10000000000000001", "0.1")``, ``("-0", "0")``
    -- or None. Equal once parsed, but not to a Decimal or jsonb reader: a file rqp wrote holds
    only its own forms (Python's shortest round-trip float text, plain integers)."""
    found: list[tuple[str, str]] = []

    def number(literal: str, parse: type[float] | type[int]) -> float | int:
        value = parse(literal)
        if not found and repr(value) != literal:
            found.append((literal, repr(value)))
        return value

    json.loads(text, parse_float=lambda s: number(s, float), parse_int=lambda s: number(s, int))
    return found[0] if found else None
