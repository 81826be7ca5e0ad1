"""A blob-store writer's junk ``manifest.json`` (#29 atk4 B5, B9): ``Manifest.from_json`` refuses
anything that is not exactly a manifest with one ``IntegrityError`` line naming the blob and the
fix -- never an AttributeError, RecursionError or a time of infinity that a reader passes on."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rqp.crypto import DEFAULT_SEGMENT_SIZE
from rqp.errors import IntegrityError
from rqp.workload import MAX_MANIFEST_BYTES, BlobInfo, Manifest

WID = "w1"
LINE = rf"^manifest\.json of workload {WID} is not a manifest \(.+\); restore that blob, or re-pack the workload"


def _good() -> dict:
    m = Manifest(
        workload=WID,
        created=1_765_000_000.5,
        kek_id="k",
        format="jsonl",
        data=BlobInfo("workloads/w1/data.enc", 10, "ab" * 32, 5),
        script=BlobInfo("workloads/w1/script.enc", 10, "cd" * 32, 5),
        segment_size=DEFAULT_SEGMENT_SIZE,
        mac="m",
        signature={"alg": "ed25519", "signer": "sha256:00", "value": "AA=="},
    )
    return json.loads(m.to_json())


def _edited(**fields: object) -> bytes:
    return json.dumps({**_good(), **fields}).encode()


def test_a_genuine_manifest_still_reads():
    doc = _good()
    m = Manifest.from_json(json.dumps(doc).encode(), WID)
    assert m.created == 1_765_000_000.5 and m.data.size == 10 and m.signature == doc["signature"]
    assert json.loads(m.to_json()) == doc


@pytest.mark.parametrize(
    "raw",
    [
        b"null",
        b"5",
        b'"x"',
        b"[]",
        b"true",
        b"[" * 5000 + b"]" * 5000,
        b'{"a":' * 5000 + b"1" + b"}" * 5000,
        b"",
        b"\xff\xfe",
        b" " * (MAX_MANIFEST_BYTES + 1),
    ],
    ids=["null", "int", "string", "array", "bool", "deep-array", "deep-object", "empty", "not-utf8", "too-big"],
)
def test_junk_is_one_integrity_line(raw: bytes):
    with pytest.raises(IntegrityError, match=LINE) as caught:
        Manifest.from_json(raw, WID)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "fields",
    [
        {"created": "1e999"},
        {"created": None},
        {"created": True},
        {"created": -1},
        {"created": 1e300},
        {"expires": 1e300},
        {"expires": "soon"},
        {"data": None},
        {"data": 5},
        {"data": {"name": "x"}},
        {"script": {"name": "x", "size": -1, "sha256": "a", "plain_size": 1}},
        {"script": {"name": "x", "size": 1.5, "sha256": "a", "plain_size": 1}},
        {"workload": 5},
        {"segment_size": 0},
        {"segment_size": True},
        {"signature": "x"},
        {"signature": {"alg": 1}},
        {"id_field": 3},
        {"kek_id": ["k"]},
        {"unknown": 1},
        {"manifest_format": "rqp-workload/0"},
    ],
)
def test_wrong_fields_are_one_integrity_line(fields: dict):
    with pytest.raises(IntegrityError, match=LINE):
        Manifest.from_json(_edited(**fields), WID)


@pytest.mark.parametrize("literal", [b"1e999", b"-1e999", b"NaN", b"Infinity"])
def test_a_time_that_is_not_finite_is_refused(literal: bytes):
    """B9: ``created: 1e999`` became infinity, which the console's JSON then wrote as ``Infinity``."""
    raw = json.dumps(_good()).encode()
    raw = raw.replace(b'"created": 1765000000.5', b'"created": ' + literal)
    assert literal in raw
    with pytest.raises(IntegrityError, match=LINE):
        Manifest.from_json(raw, WID)


def test_a_missing_field_is_named():
    doc = _good()
    del doc["created"]
    with pytest.raises(IntegrityError, match=r"no field 'created'"):
        Manifest.from_json(json.dumps(doc).encode(), WID)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    field=st.sampled_from([*_good().keys(), "data.size", "script.name", "signature.alg", "new"]),
    value=_JSON,
    raw=st.binary(max_size=64),
)
def test_whatever_a_blob_writer_puts_there_is_a_manifest_or_one_line(field: str, value: object, raw: bytes):
    """A blob-writer fuzz of ``manifest.json``: one field of a genuine manifest set to any JSON
    value, or any bytes at all -- a ``Manifest`` whose fields have their types, or one
    ``IntegrityError`` line; no other exception (a reader of many workloads must not die of it)."""
    doc = _good()
    top, _, sub = field.partition(".")
    if sub:
        doc[top] = {**doc[top], sub: value}
    else:
        doc[top] = value
    for blob in (json.dumps(doc).encode(), raw):
        try:
            m = Manifest.from_json(blob, WID)
        except IntegrityError as exc:
            assert "\n" not in str(exc) and str(exc).startswith(("manifest.json of workload w1 ", "manifest under")), (
                exc
            )
            continue
        assert isinstance(m.created, float) and math.isfinite(m.created) and isinstance(m.data, BlobInfo)
        assert isinstance(m.data.size, int) and isinstance(m.script.sha256, str) and isinstance(m.workload, str)
        assert json.loads(m.to_json()) is not None


@pytest.mark.parametrize("junk", [5, "x", [], {}, {"manifest": "m"}, {"manifest": 1, "summary_sha256": ""}])
def test_a_supersedes_field_that_is_not_the_record_is_refused_with_one_line(junk):
    """``supersedes`` (atk5 C3: the generation a ``--replace`` one replaced) is read as exactly
    its two text fields or refused as any other junk field is; null and absent both mean none."""
    with pytest.raises(IntegrityError, match=LINE):
        Manifest.from_json(_edited(supersedes=junk), WID)
    good = {"manifest": "ab" * 32, "summary_sha256": "cd" * 32}
    assert Manifest.from_json(_edited(supersedes=good), WID).supersedes == good
    assert Manifest.from_json(_edited(supersedes=None), WID).supersedes is None


def test_a_junk_superseded_manifest_is_named_as_the_superseded_one(tmp_path):
    """Was (seventh review): a junk ``superseded/manifest.json`` was refused as "manifest.json of
    workload w1", which reads as the current generation's (the one that was fine)."""
    from rqp.storage import FileBlobStore
    from rqp.workload import SUPERSEDED, Workload, blob_name

    store = FileBlobStore(tmp_path)
    store.put(blob_name(WID, "manifest.json"), json.dumps(_good()).encode())
    store.put(blob_name(WID, SUPERSEDED + "manifest.json"), b"null")
    with pytest.raises(IntegrityError) as err:
        Workload.open(store, None, WID, None, generation=SUPERSEDED)  # type: ignore[arg-type]  # refused before either is used
    assert str(err.value).startswith(f"superseded/manifest.json of workload {WID} is not a manifest (JSON null"), (
        err.value
    )
