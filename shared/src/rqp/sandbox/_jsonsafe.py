"""Strict JSON for records and results: whatever the bytes, a value or one line saying why not.

Standard library only: the script host imports it (from this directory, before it confines
itself) to read records and encode results; the roles use it through ``rqp.jsonsafe``.

The rules (the README's "Records and results" section):

* text is UTF-8 (no other encoding is guessed, as ``json.loads`` does for bytes);
* nesting is at most ``MAX_JSON_DEPTH`` arrays/objects deep, checked by a scan that does not
  recurse *before* ``json`` (whose parser recurses) sees the text;
* ``NaN``, ``Infinity`` and ``-Infinity`` are not JSON: as literals in data they fail the record,
  and a number too large for a float (``1e999``) is refused instead of becoming infinity;
* integers are bounded by Python's digit limit (``sys.get_int_max_str_digits``, 4300 digits);
* a name appears once in an object: ``{"a":1,"a":2}`` is refused (readers disagree on which one
  counts -- the first or the last -- so a result holding one would mean different things to
  different consumers);
* encoding never writes NaN or Infinity (``allow_nan=False``): a value holding one is refused
  with where it is (``NaN at $.scores[2]``).

Every refusal is a ``JSONRejected`` (a ``ValueError``) with a one-line reason.
"""

from __future__ import annotations

import json
import json.encoder
import math
import re

TYPE_CHECKING = False  # the host imports no more than it must
if TYPE_CHECKING:
    from typing import Any

__all__ = ["MAX_JSON_DEPTH", "JSONRejected", "depth_exceeds", "dumps", "loads", "names_distinct", "nan_path"]

#: arrays/objects nested deeper than this are refused (json's own parser recurses, ~1000 deep)
MAX_JSON_DEPTH = 512

_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|"|[\[\]{}]', re.DOTALL)
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)  # ASCII: no surrogate reaches UTF-8
#: json's C encoder factory (None in an interpreter built without ``_json``)
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)


def _c_encode_fn() -> Any:
    """``_ENCODER``'s own C encoder, made once (``JSONEncoder.encode`` makes one per call, ~1 us
    of a 2.6 us result encoding in the script host): the same arguments ``iterencode`` passes
    -- ASCII escapes, compact separators, ``allow_nan=False``. Without cycle markers (they are a
    dict filled and emptied per call, and a failed call would leave entries in a shared one): a
    value that contains itself nests until ``RecursionError``, and ``dumps`` asks ``_ENCODER``
    (with markers) which of the two it was."""
    e = _ENCODER
    if _c_make_encoder is None:  # pragma: no cover
        return lambda value, _level: (e.encode(value),)
    return _c_make_encoder(
        None,
        e.default,
        json.encoder.encode_basestring_ascii,
        None,
        e.key_separator,
        e.item_separator,
        False,
        False,
        False,
    )


_C_ENCODE = _c_encode_fn()


class JSONRejected(ValueError):
    """A value or text that is not strict JSON; ``str()`` is one line saying why."""


def depth_exceeds(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``text`` nests arrays/objects deeper than ``limit``, brackets inside strings not
    counted. No recursion, and no scan at all when the text has too few brackets to get there
    (nor a count of them when it is too short to hold that many: a result's usual text)."""
    if len(text) <= limit or text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    for m in _TOKENS.finditer(text):
        c = m.group()
        if c == '"':
            return False  # an unterminated string: json refuses it without nesting deeper
        if c in "[{":
            depth += 1
            if depth > limit:
                return True
        elif c in "]}":
            depth = max(depth - 1, 0)
    return False


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise JSONRejected(f"number {text[:40]} is too large for a 64-bit float")
    return value


def _constant(name: str) -> Any:
    raise JSONRejected(f"{name} is not JSON (use null or a string)")


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise JSONRejected(
                    f"duplicate name {json.dumps(name)[:60]} in an object (readers disagree on which counts)"
                )
            seen.add(name)
    return obj


_DECODER = json.JSONDecoder(parse_float=_finite, parse_constant=_constant, object_pairs_hook=_unique)


#: the strict decoder's scanner (json's C scanner with the hooks above), called directly for
#: the usual text: a value from its first character to its last, no whitespace around it
_SCAN = _DECODER.scan_once  # type: ignore[attr-defined]


def loads(data: bytes | str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse strict JSON (see the module's rules); ``JSONRejected`` with one line otherwise."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JSONRejected(f"not valid UTF-8 (byte {exc.start})") from None
    else:
        text = data
    if text.startswith("\ufeff"):
        raise JSONRejected("not valid JSON (a byte order mark, U+FEFF, before the value)")
    if depth_exceeds(text, max_depth):
        raise JSONRejected(f"nested deeper than {max_depth} levels")
    # The usual text is one value that fills it: the scanner alone reads it, without the two
    # whitespace regex matches and calls of ``JSONDecoder.decode`` (~0.7 us of ~3 per 1 KB
    # record in the script host). ``decode`` runs this same scanner from index 0 when the text
    # starts without whitespace, so a value it returns ending at the text's end is exactly
    # ``decode``'s; anything else -- whitespace, trailing data, any error -- is ``decode``'s
    # to read or refuse, below, with its own message (issue 28).
    try:
        value, end = _SCAN(text, 0)
    except Exception:  # noqa: BLE001 - StopIteration, JSONRejected, RecursionError, ...: decode says which
        pass
    else:
        if end == len(text):
            return value
    try:
        return _DECODER.decode(text)
    except JSONRejected:
        raise
    except json.JSONDecodeError as exc:
        raise JSONRejected(f"not valid JSON ({exc})") from None
    except RecursionError:
        raise JSONRejected("nested too deeply for this process") from None
    except ValueError as exc:  # an integer over the digit limit
        raise JSONRejected(" ".join(str(exc).split(";")[0].split())) from None


def nan_path(value: Any, limit: int = MAX_JSON_DEPTH) -> str | None:
    """Where the first NaN/Infinity in ``value`` is (``NaN at $.a[2]``), or None. Iterative."""
    stack: list[tuple[Any, str, int]] = [(value, "$", 0)]
    while stack:
        v, path, depth = stack.pop()
        if isinstance(v, float):
            if math.isnan(v):
                return f"NaN at {path}"
            if math.isinf(v):
                return f"{'-' if v < 0 else ''}Infinity at {path}"
        elif depth < limit and isinstance(v, dict):
            for k in reversed(list(v)):
                if isinstance(k, float) and not math.isfinite(k):
                    return f"{k!r} as a key at {path}"
                stack.append(
                    (v[k], f"{path}.{k}" if isinstance(k, str) and k.isidentifier() else f"{path}[{k!r}]", depth + 1)
                )
        elif depth < limit and isinstance(v, (list, tuple)):
            stack.extend((x, f"{path}[{i}]", depth + 1) for i, x in reversed(list(enumerate(v))))
    return None


def dumps(value: Any, max_depth: int = MAX_JSON_DEPTH) -> str:
    """Compact strict JSON for ``value``, which ``loads`` reads back; ``JSONRejected`` for NaN,
    Infinity, nesting over ``max_depth``, a name twice in an object; ``TypeError`` for what JSON has
    no form for."""
    try:
        try:
            text = "".join(_C_ENCODE(value, 0))
        except RecursionError:  # too deep, or it contains itself: the encoder with markers says which
            text = _ENCODER.encode(value)
    except RecursionError:
        raise JSONRejected(f"nested deeper than {max_depth} levels") from None
    except ValueError as exc:
        where = nan_path(value, max_depth)
        if where is not None:
            raise JSONRejected(where) from None
        raise JSONRejected(" ".join(str(exc).split(";")[0].split())) from None
    if depth_exceeds(text, max_depth):
        raise JSONRejected(f"nested deeper than {max_depth} levels")
    if "{" in text and ("\\ud" in text or "\\uD" in text or not (_flat_str_dict(value) or names_distinct(value))):
        # a dict subclass's items() (or keys 1 and "1") can write a name twice: read it back
        # strictly, so such a value is refused here rather than stored ambiguous. So can two
        # distinct str names through a surrogate escape: "\U0001F600" and the two lone halves
        # "\ud83d" "\ude00" are both written \ud83d\ude00 (atk11 F5)
        loads(text, max_depth)
    return text


#: the types the encoder writes without calling anything of the value's own
_PLAIN = frozenset((str, int, float, bool, type(None)))
_STR = frozenset((str,))
#: containers' entries looked at before ``names_distinct`` gives up (and the text is read back)
NAMES_CHECK_BUDGET = 256


def _flat_str_dict(value: Any) -> bool:
    """``names_distinct`` for its commonest true case -- one exact ``dict`` of at most
    ``NAMES_CHECK_BUDGET`` exact-``str`` names and plain values -- in one expression (0.2 us
    against 0.75 for the general walk)."""
    return (
        type(value) is dict
        and len(value) <= NAMES_CHECK_BUDGET
        and _STR.issuperset(map(type, value))
        and _PLAIN.issuperset(map(type, value.values()))
    )


def names_distinct(value: Any, budget: int = NAMES_CHECK_BUDGET) -> bool:
    """True when the encoder cannot have written a name twice in ``value``: every object in it is
    an exact ``dict`` whose keys are all exact ``str`` (distinct strings have distinct JSON
    texts, but for surrogate escapes, which ``dumps`` reads back whatever this says), inside exact lists/tuples and scalars. False means "not known" -- a subclass, a
    non-string key, or more than ``budget`` entries -- and ``dumps`` reads its text back strictly.
    A few C-level calls per container instead of a parse with a Python hook per object: the
    common result (a small dict of strings and numbers) costs a fraction of a read-back. Not a
    security boundary (the script shares this process; the role and the results root check what
    leaves it): it decides only whether the slower proof is needed."""
    stack = [value]
    pop, extend = stack.pop, stack.extend
    while stack:
        v = pop()
        t = type(v)
        if t is dict:
            budget -= len(v)
            if budget < 0 or not _STR.issuperset(map(type, v)):
                return False
            entries = v.values()
            if not _PLAIN.issuperset(map(type, entries)):
                extend(entries)
        elif t is list or t is tuple:
            budget -= len(v)
            if budget < 0:
                return False
            if not _PLAIN.issuperset(map(type, v)):
                extend(v)
        elif t not in _PLAIN:
            return False
    return True
