"""The security review's findings on results roots and proofs (issue #29), each held here without a
cluster: a lone surrogate in a value or a field name digests (as its JSON escape) instead of
failing the root, and the processor's check finds it per record (F1); input digests are bound to
the record (F10); ``rqp verify-proof`` refuses, with one line and no traceback, a proof that is
not exactly rqp's form (F12), junk JSON (F5), and a proof of another workload, record, key or
round than asked (F11), as the README's plain check does; ``rqp keygen`` sends a results key's
public half to the results trust file, never the submitters' (F13); the reader's round note says
when no sealed head confirmed the round (F8)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from rqp.cli import main
from rqp.errors import IntegrityError
from rqp.merkle import audit_path, leaf_hash, tree_root
from rqp.proof_check import Expected, check_proof
from rqp.results_root import RESULT, Attestation, canonical, failed_leaf, input_digest, input_key, leaf_bytes
from rqp.round_marker import round_checked, round_note
from rqp.signing import LocalSigningKey, generate_signing_key
from rqp.surrogates import lone_surrogate
from rqp.verification import proof_doc

from .test_cli_verify import _readme_check

#: these tests hand check_proof parsed documents on purpose (the forged fields are easier to
#: write so); what the warning says is tested where it is the point
pytestmark = pytest.mark.filterwarnings("ignore::rqp.proof_check.ParsedProofWarning")

N, RID, WID = 5, 3, "w-proof"
VALUE = {"name": "Al\udce9x", "\ud800": 1, "ok": "é😀"}  # lone surrogates in a value and a name


@pytest.fixture(scope="module")
def results_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[LocalSigningKey, Path]:
    d = tmp_path_factory.mktemp("results-key")
    generate_signing_key(d / "results.pem")
    return LocalSigningKey(d / "results.pem"), d / "results.pub.pem"


def _proof(key: LocalSigningKey, value: Any = VALUE, round_: int = 2, unique: bool | None = True) -> dict[str, Any]:
    """A signed proof of record ``RID`` (key "K-3") holding ``value``, in a tree of ``N``; its
    statement says whether keys are unique (``unique`` None: a v1 statement, which does not)."""
    mac = hashlib.sha256(b"input").digest()
    own = leaf_hash(leaf_bytes(RID, "K-3", mac, RESULT, hashlib.sha256(canonical(value)).hexdigest()))
    leaves = [hashlib.sha256(bytes([i])).digest() for i in range(N)]
    leaves[RID] = own
    root, size = tree_root(leaves)
    statement = {"v": 1, "workload": WID, "round": round_, "root": root.hex(), "size": size, "manifest": "m", "data_sha256": "d", "script_sha256": "s"}  # fmt: skip
    if unique is not None:
        statement.update(v=2, unique_keys=unique)
    att = Attestation(statement, key.signature(Attestation(statement, None, "").message()), key.public_pem().decode())
    leaf, path = audit_path(leaves, RID, size)
    record = {"id": RID, "key": "K-3", "kind": RESULT, "value": value, "input": mac.hex()}
    return proof_doc(att, record, leaf, path)


def _copy(doc: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(doc))


# F1 ---------------------------------------------------------------------------------------------


def test_a_lone_surrogate_digests_as_its_json_escape_and_proves_with_both_checkers(results_key):
    key, pub = results_key
    # before: UnicodeEncodeError here failed the whole workload's root
    assert canonical(VALUE) == b'{"name":"Al\\udce9x","ok":"\xc3\xa9\xf0\x9f\x98\x80","\\ud800":1}'
    assert json.loads(canonical(VALUE)) == VALUE  # still the same JSON value
    assert canonical("\\ud800") != canonical("\ud800")  # a literal backslash-u stays told apart
    assert failed_leaf("bad \udce9 reason")[1] == hashlib.sha256(b"bad \\udce9 reason").hexdigest()
    doc = _proof(key)
    assert check_proof(_copy(doc), pub.read_bytes()).startswith("sha256:")
    assert _readme_check()(_copy(doc), pub.read_bytes(), WID, RID) is True


@pytest.mark.parametrize(
    ("result", "lone"),
    [
        ('"\\ud800"', "\\ud800"),
        ('{"name":"Al\\udce9x"}', "\\udce9"),
        ('{"\\uD800":1}', "\\ud800"),  # upper-case hex from an untrusted host
        ('"\\ud83d\\ud83d\\ude00"', "\\ud83d"),  # a high one, then a pair
        ('"\\ude00\\ud83d"', "\\ude00"),  # the halves in the wrong order
        ('"\\ud83d\\ude00"', None),  # an emoji as ASCII JSON writes it
        ('"\\\\ud800"', None),  # an escaped backslash, then the letters ud800
        ('{"n":1,"s":"plain"}', None),
    ],
)
def test_the_processor_finds_a_lone_surrogate_in_a_result_as_the_host_encodes_it(result, lone):
    assert lone_surrogate(result.encode()) == lone


# F10 --------------------------------------------------------------------------------------------


def test_equal_inputs_of_two_records_have_unrelated_digests():
    k = input_key(b"\x01" * 32, "w-yn")
    assert input_digest(k, 0, b'{"v":"yes"}') != input_digest(k, 1, b'{"v":"yes"}')
    # framed: the id is a fixed 8 bytes, so no id/input split collides with another
    assert input_digest(k, 1, b"2") != input_digest(k, 12, b"")
    assert input_key(b"\x01" * 32, "w-yn") != input_key(b"\x01" * 32, "w-yo")


# F12, F5, F11 -----------------------------------------------------------------------------------


def _edit(path: tuple[str, ...], value: Any) -> Any:
    def apply(doc: dict[str, Any]) -> dict[str, Any]:
        target = doc
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value
        return doc

    return apply


EDITS = {
    "id true": lambda d: _edit(("index",), True)(_edit(("record", "id"), True)(d)),
    "id as text": _edit(("record", "id"), " 3"),
    "index as text": _edit(("index",), " 3"),
    "upper-case input": lambda d: _edit(("record", "input"), d["record"]["input"].upper())(d),
    "upper-case leaf": lambda d: _edit(("leaf",), d["leaf"].upper())(d),
    "input of zeros": _edit(("record", "input"), "0" * 64),
    "short input": lambda d: _edit(("record", "input"), d["record"]["input"][:62])(d),
    "extra field": _edit(("note",), "forged"),
    "extra record field": _edit(("record", "error"), "FORGED"),
    "public key not text": _edit(("public_key",), 5),
    "round as text": _edit(("round",), "2"),
    "failed value not text": lambda d: _edit(("record", "value"), 7)(_edit(("record", "kind"), "failed")(d)),
    "path not canonical base64": lambda d: _edit(("path",), d["path"].rstrip("=") + "\n")(d),
    "format": _edit(("format",), "rqp-proof/9"),
}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_rqp_refuses_a_proof_not_exactly_in_rqps_form_with_one_line(results_key, tmp_path, capsys, edit):
    key, pub = results_key
    doc = EDITS[edit](_copy(_proof(key, {"n": 1})))
    with pytest.raises(IntegrityError, match="the proof is not an rqp proof"):
        check_proof(doc, pub.read_bytes())
    f = tmp_path / "p.json"
    f.write_text(json.dumps(doc))
    assert main(["verify-proof", str(f), "--signer", str(pub)]) == 4
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    readme_refuses = ("id true", "id as text", "upper-case input", "input of zeros", "short input")
    # A4: and since atk3, a field rqp never writes, and a leaf that is not the record's own
    if edit in (*readme_refuses, "extra field", "extra record field", "upper-case leaf", "round as text"):
        assert _readme_check()(doc, pub.read_bytes(), WID, RID) is False  # the README's check agrees


#: A4: (rqp's number, the same number written otherwise) -- equal once parsed, not to a Decimal
#: or jsonb reader of the file, and not what rqp writes
LITERALS = [
    ('"price":0.1', '"price":0.10000000000000001'),
    ('"price":0.1', '"price":1e-1'),
    ('"big":1e+22', '"big":10000000000000000000001.0'),
    ('"zero":0', '"zero":-0'),
]


@pytest.mark.parametrize(("genuine", "forged"), LITERALS)
def test_a4_a_number_written_otherwise_is_refused_by_the_library_the_cli_and_the_readme(
    results_key, tmp_path, capsys, genuine, forged
):
    """Was (atk3 A4): ``rqp verify-proof`` refused ``0.10000000000000001`` for ``0.1``, but
    ``rqp.verification.check_proof`` and the README's plain check returned the signer / True."""
    key, pub = results_key
    text = json.dumps(_proof(key, {"price": 0.1, "big": 1e22, "zero": 0, "name": "p1"}), separators=(",", ":"))
    assert genuine in text
    edited = text.replace(genuine, forged).encode()
    readme = _readme_check()
    assert check_proof(text.encode(), pub.read_bytes()).startswith("sha256:")  # the genuine file passes all three
    assert readme(text.encode(), pub.read_bytes(), WID, RID) is True
    with pytest.raises(IntegrityError, match=f"writes the number {re.escape(forged.split(':')[1])} where rqp writes"):
        check_proof(edited, pub.read_bytes())
    assert readme(edited, pub.read_bytes(), WID, RID) is False
    f = tmp_path / "x.json"
    f.write_bytes(edited)
    assert main(["verify-proof", str(f), "--signer", str(pub)]) == 4
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"the proof {f} writes the number" in err, err


@pytest.mark.parametrize(
    "edit",
    [_edit(("comment",), "price is 999"), _edit(("record", "value_shown"), {"price": 999})],
    ids=["top", "record"],
)
def test_a4_fields_rqp_never_writes_fail_the_readme_check_and_the_library(results_key, edit):
    """Was (atk3 A4): the README check returned True beside a forged ``comment`` or ``value_shown``
    that a viewer showing the proof's fields would show."""
    key, pub = results_key
    doc = edit(_copy(_proof(key, {"price": 0.1})))
    assert _readme_check()(doc, pub.read_bytes(), WID, RID) is False
    with pytest.raises(IntegrityError, match="the proof is not an rqp proof"):
        check_proof(json.dumps(doc).encode(), pub.read_bytes())


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        (b'{"record":{"value":NaN}}', "not strict JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "not strict JSON"),
        (b"\xff\xfe junk", "not strict JSON"),
        (b"[1,2]", "the proof must be an object"),
        (b'{"format":"rqp-proof/1"}', "lacks"),
    ],
)
def test_verify_proof_says_one_line_for_junk_json(results_key, tmp_path, capsys, text, expect):
    _key, pub = results_key
    f = tmp_path / "junk.json"
    f.write_bytes(text)
    assert main(["verify-proof", str(f), "--signer", str(pub)]) == 4
    err = capsys.readouterr().err
    assert expect in err and err.count("\n") == 1 and "Traceback" not in err, err


def test_an_edited_round_is_named(results_key):
    key, pub = results_key
    doc = _copy(_proof(key, {"n": 1}))
    doc["round"] = 1
    with pytest.raises(IntegrityError, match="the proof says round 1 but its signed statement is round 2: edited"):
        check_proof(doc, pub.read_bytes())


def test_a_nan_value_in_an_otherwise_genuine_proof_is_one_line(results_key):
    key, pub = results_key
    doc = _copy(_proof(key, {"n": 1}))
    doc["record"]["value"] = float("nan")  # what a lenient reader would hand over
    with pytest.raises(IntegrityError, match="not strict JSON"):
        check_proof(doc, pub.read_bytes())


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["--workload", "w-other"], f"the proof is of workload {WID}, not w-other"),
        (["--record", "4"], f"the proof is of record {RID} of workload {WID}, not record 4"),
        (["--key", "K-4"], "with key 'K-3', not key 'K-4'"),
        (["--round", "3"], f"the proof is of round 2 of workload {WID}, not round 3"),
    ],
)
def test_verify_proof_refuses_a_genuine_proof_of_what_was_not_asked(results_key, tmp_path, capsys, args, expect):
    key, pub = results_key
    f = tmp_path / "p.json"
    f.write_text(json.dumps(_proof(key, {"n": 1})))
    assert main(["verify-proof", str(f), "--signer", str(pub), *args]) == 4
    err = capsys.readouterr().err
    assert expect in err and err.count("\n") == 1, err
    readme = _readme_check()
    doc = json.loads(f.read_text())
    wid, rid, round_ = WID, RID, 2
    if args[0] == "--workload":
        wid = args[1]
    elif args[0] == "--record":
        rid = int(args[1])
    elif args[0] == "--round":
        round_ = int(args[1])
    assert readme(doc, pub.read_bytes(), wid, rid, round_) is (args[0] == "--key")  # the README has no key


def test_verify_proof_passes_what_was_asked(results_key, tmp_path, capsys):
    key, pub = results_key
    f = tmp_path / "p.json"
    f.write_text(json.dumps(_proof(key, {"n": 1})))
    asked = ["--workload", WID, "--record", str(RID), "--round", "2"]
    assert main(["verify-proof", str(f), "--signer", str(pub), *asked]) == 0
    assert f"record {RID} of workload {WID} (result) is in the round 2 root" in capsys.readouterr().out
    assert main(["verify-proof", str(f), "--signer", str(pub), "--key", "K-3"]) == 0
    assert check_proof(json.loads(f.read_text()), pub.read_bytes(), Expected(WID, RID, None, 2))
    assert _readme_check()(json.loads(f.read_text()), pub.read_bytes(), WID, RID, 2) is True


@pytest.mark.parametrize("unique", [False, None])
def test_n6_verify_proof_key_refuses_when_keys_are_not_proven_unique(results_key, tmp_path, capsys, unique):
    """Was: keys need not be unique, and ``verify-proof --key K`` accepted any record's proof with
    key K. Now the signed statement (v2) says ``unique_keys``; ``--key`` is refused when it is
    false, or absent (a v1 statement), with one line -- ``--record`` still checks."""
    key, pub = results_key
    f = tmp_path / "p.json"
    f.write_text(json.dumps(_proof(key, {"n": 1}, unique=unique)))
    assert main(["verify-proof", str(f), "--signer", str(pub), "--key", "K-3"]) == 4
    err = capsys.readouterr().err
    assert "--key cannot be checked for workload w-proof: its signed statement does not say its keys" in err, err
    assert err.count("\n") == 1, err
    assert main(["verify-proof", str(f), "--signer", str(pub), "--record", str(RID)]) == 0


def test_n6_a_statement_claiming_unique_keys_in_v1_or_without_a_boolean_is_refused(results_key):
    key, pub = results_key
    for edit in ({"unique_keys": True}, {"v": 2}, {"v": 2, "unique_keys": 1}):
        doc = _proof(key, {"n": 1}, unique=None)
        doc["statement"].update(edit)
        with pytest.raises(IntegrityError, match="unique_keys must be true or false in v2, absent in v1"):
            check_proof(doc, pub.read_bytes())


# F13 --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [["--results"], ["--signing", "--out", "keys/results.pem"]])
def test_keygen_sends_a_results_keys_public_half_to_the_results_trust_file(tmp_path, monkeypatch, capsys, args):
    monkeypatch.chdir(tmp_path)
    assert main(["keygen", *args]) == 0
    out = capsys.readouterr().out
    assert "RQP_TRUSTED_RESULTS_KEYS_FILE" in out and "trusted_signers.pem" not in out, out
    assert "never add it to RQP_TRUSTED_SIGNERS_FILE" in out
    assert (tmp_path / "keys" / "results.pub.pem").exists()


def test_keygen_signing_still_names_the_submitters_trust_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["keygen", "--signing"]) == 0
    assert "RQP_TRUSTED_SIGNERS_FILE: cat keys/signer.pub.pem >> trusted_signers.pem" in capsys.readouterr().out


# F8 ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "marked", "summary", "note"),
    [
        ((2, True), 2, 2, ""),  # the head confirms it
        ((2, False), 2, 1, "round 2 is running: it will supersede this round"),  # round 1 current meanwhile (N-a)
        ((1, True), None, 1, ""),
        (None, 2, 2, "round not checked: no sealed head in Redis says which round is current"),  # N3: replayable
        (None, 2, 1, "round not checked: the sealed round marker says round 2 was begun"),  # head deleted
        ((1, True), 2, 1, "round not checked: the sealed round marker says round 2 was begun"),  # older head
        (None, None, 1, "round not checked: no sealed head in Redis and no round marker"),
    ],
)
def test_the_round_note_says_when_no_sealed_head_confirmed_the_round(head, marked, summary, note):
    got = round_note(head, marked, summary)
    assert (note in got) if note else got == ""
    assert round_checked(got) is (head is not None and "round not checked" not in note)
