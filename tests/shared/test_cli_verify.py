"""The pieces of ``rqp verify`` that need no cluster: a proof (built here over 1,000,000 synthetic
leaves) checks with ``check_proof`` and with the README's plain-Python check, and fails when its
value, path or signer changed. (Exports are checked against a real workload's stored results:
tests/e2e/test_verify.py and tests/e2e/test_verify_exports.py.)"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from rqp.errors import IntegrityError
from rqp.merkle import HASH_SIZE, audit_path, iter_hashes, leaf_hash, tree_root
from rqp.results_root import RESULT, Attestation, canonical, leaf_bytes
from rqp.verification import check_proof, proof_doc

#: these tests hand check_proof parsed documents on purpose (the forged fields are easier to
#: write so); what the warning says is tested where it is the point
pytestmark = pytest.mark.filterwarnings("ignore::rqp.proof_check.ParsedProofWarning")

README = Path(__file__).resolve().parents[2] / "README.md"
N = 1_000_000


def _readme_check() -> Any:
    """The README's ~30-line proof check, run as written; it reads the proof file's bytes (a dict
    given here is written as ``rqp proof`` writes it)."""
    text = README.read_text()
    block = re.search(r"```python\n(import base64, hashlib, json\n.*?)```", text, re.S)
    assert block, "the README's proof check is missing"
    assert (
        len(block.group(1).splitlines()) <= 45
    )  # numbers, exact fields, the manifest pin, the key it names (A4, A3, B3)
    space: dict[str, Any] = {}
    exec(block.group(1), space)  # the README's own code, under test
    check = space["check"]

    def run(proof: Any, *args: Any) -> Any:
        text = proof if isinstance(proof, (str, bytes)) else json.dumps(proof, separators=(",", ":"))
        return check(text, *args)

    return run


@pytest.fixture(scope="module")
def million(operator_key: Any) -> tuple[dict[str, Any], bytes]:
    """A signed proof of record 654,321 of a 1,000,000-record tree (other leaves synthetic)."""
    rid, value, mac = 654_321, {"amount": 12.5, "ok": True}, hashlib.sha256(b"input").digest()
    own = leaf_hash(leaf_bytes(rid, "TX-1", mac, RESULT, hashlib.sha256(canonical(value)).hexdigest()))
    raw = bytearray(b"".join(hashlib.sha256(i.to_bytes(8, "big")).digest() for i in range(N)))
    raw[rid * HASH_SIZE : (rid + 1) * HASH_SIZE] = own
    root, size = tree_root(iter_hashes([bytes(raw)]))
    statement = {"v": 1, "workload": "w-million", "round": 1, "root": root.hex(), "size": size, "manifest": "m", "data_sha256": "d", "script_sha256": "s"}  # fmt: skip
    unsigned = Attestation(statement, None, "")
    att = Attestation(statement, operator_key.signature(unsigned.message()), operator_key.public_pem().decode())
    leaf, path = audit_path(iter_hashes([bytes(raw)]), rid, size)
    record = {"id": rid, "key": "TX-1", "kind": RESULT, "value": value, "input": mac.hex()}
    return proof_doc(att, record, leaf, path), operator_key.public_pem()


@pytest.fixture(scope="module")
def operator_key(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from rqp.signing import LocalSigningKey, generate_signing_key

    d = tmp_path_factory.mktemp("results-key")
    generate_signing_key(d / "results.pem")
    return LocalSigningKey(d / "results.pem")


def test_a_million_record_proof_is_small_and_checks_in_milliseconds(million):
    doc, pem = million
    size = len(json.dumps(doc, separators=(",", ":")).encode())
    t0 = time.perf_counter()
    assert check_proof(doc, pem).startswith("sha256:")
    took = time.perf_counter() - t0
    readme = _readme_check()
    t1 = time.perf_counter()
    assert readme(doc, pem, "w-million", 654_321) is True
    took_readme = time.perf_counter() - t1
    # the whole proof (public key and signature included), and the check (signature included)
    assert size < 2048, size
    assert took < 0.05 and took_readme < 0.05, (took, took_readme)
    print(
        f"proof of 1 of {N:,} records: {size} bytes ({len(doc['path']) * 3 // 4 // 32} hashes); checked in {took * 1000:.2f} ms"
    )


def test_a_changed_value_path_or_signer_fails_the_proof(million, tmp_path):
    doc, pem = million
    readme = _readme_check()
    changed = json.loads(json.dumps(doc))
    changed["record"]["value"]["amount"] = 12.6
    with pytest.raises(IntegrityError, match="record 654321 of the proof does not hash to its leaf"):
        check_proof(changed, pem)
    assert readme(changed, pem, "w-million", 654_321) is False
    moved = json.loads(json.dumps(doc))
    moved["path"] = moved["path"][:40] + ("A" if moved["path"][40] != "A" else "B") + moved["path"][41:]
    with pytest.raises(IntegrityError, match="path does not lead to the signed root"):
        check_proof(moved, pem)
    assert readme(moved, pem, "w-million", 654_321) is False
    from rqp.signing import generate_signing_key

    generate_signing_key(tmp_path / "other.pem")
    other = (tmp_path / "other.pub.pem").read_bytes()
    with pytest.raises(IntegrityError, match="not by the trusted key sha256:"):
        check_proof(doc, other)
    assert readme(doc, other, "w-million", 654_321) is False
    replayed = json.loads(json.dumps(doc))
    replayed["statement"]["workload"] = "w-other"
    replayed["workload"] = "w-other"
    with pytest.raises(IntegrityError, match="differs from what sha256:"):
        check_proof(replayed, pem)
    assert readme(replayed, pem, "w-million", 654_321) is False


@pytest.mark.parametrize("key", [None, "TX-1", 'é"\\\n', "12"])
def test_leaf_bytes_are_the_json_the_readme_hashes(key):
    mac = bytes(range(32))
    doc = [7, key, mac.hex(), RESULT, "ab" * 32]
    assert leaf_bytes(7, key, mac, RESULT, "ab" * 32) == b"rqp-leaf/1" + json.dumps(doc, separators=(",", ":")).encode()


def test_n7_the_readme_check_refuses_a_name_given_twice(million):
    """Was: the README's check loaded the proof with ``json.load`` (the last of a name given twice
    wins), so a proof opening with ``"workload":"payroll"`` or a forged ``"value"`` -- what a
    first-wins reader or a human sees -- passed, where ``rqp verify-proof`` refuses it. Now it
    reads the file's bytes and refuses any object naming a name twice."""
    from rqp.jsonsafe import JSONRejected, loads

    doc, pem = million
    readme = _readme_check()
    text = json.dumps(doc, separators=(",", ":"))
    assert readme(text, pem, "w-million", 654_321) is True
    assert readme(text.encode(), pem, "w-million", 654_321) is True
    payroll = '{"workload":"payroll",' + text[1:]
    assert text.count('"value":{') == 1
    forged = text.replace('"value":{', '"value":{"amount":999,"ok":false},"value":{', 1)
    for bad in (payroll, forged):
        assert json.loads(bad) == doc  # a last-wins reader sees the genuine proof ...
        assert readme(bad, pem, "w-million", 654_321) is False  # ... the README's check refuses it
        with pytest.raises(JSONRejected, match="duplicate name"):
            loads(bad)  # as rqp verify-proof does


def test_n8_a_bad_signer_is_named_as_the_results_key_not_the_submitters_trust_file(tmp_path):
    """Was: a missing ``--signer`` file, or the results PRIVATE key given as one, was reported as
    the submitters' trusted signers file (fix RQP_TRUSTED_SIGNERS_FILE / append a submitter's
    .pub.pem to it). Now the line names the results key and its .pub.pem."""
    from types import SimpleNamespace

    from rqp.errors import ConfigError
    from rqp.signing import generate_signing_key
    from rqp.verification import results_trust

    settings: Any = SimpleNamespace(trusted_results_keys_file=None, revoked_signers_file=None)
    generate_signing_key(tmp_path / "results.pem")
    empty = tmp_path / "empty.pem"
    empty.write_text("# nothing here\n")
    cases = [
        (tmp_path / "nope.pem", "does not exist"),
        (empty, "holds no public key"),
        (tmp_path / "results.pem", "is a private key"),
    ]
    for path, why in cases:
        with pytest.raises(ConfigError) as err:
            results_trust(settings, path)
        line = str(err.value)
        assert f"results key {path} (--signer) {why}" in line, line
        assert "results key's .pub.pem" in line and "SIGNERS" not in line and "submitters" not in line, line
    assert len(results_trust(settings, tmp_path / "results.pub.pem").signers) == 1  # the right file still works


def _es256_proof(tmp_path: Path) -> tuple[dict[str, Any], bytes]:
    """A proof of a one-record tree signed ES256 (as a Key Vault results key signs: r || s)."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    from rqp.pem import fingerprint
    from rqp.signing import ES256, Signature

    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    mac, value = hashlib.sha256(b"in").digest(), {"n": 1}
    leaf = leaf_hash(leaf_bytes(0, None, mac, RESULT, hashlib.sha256(canonical(value)).hexdigest()))
    statement = {"v": 1, "workload": "w-es", "round": 1, "root": leaf.hex(), "size": 1, "manifest": "m", "data_sha256": "d", "script_sha256": "s"}  # fmt: skip
    r, s = decode_dss_signature(key.sign(Attestation(statement, None, "").message(), ec.ECDSA(hashes.SHA256())))
    sig = Signature(ES256, fingerprint(key.public_key()), r.to_bytes(32, "big") + s.to_bytes(32, "big"))
    record = {"id": 0, "key": None, "kind": RESULT, "value": value, "input": mac.hex()}
    return proof_doc(Attestation(statement, sig, pem.decode()), record, leaf, []), pem


def _b64_edit(doc: dict[str, Any], where: tuple[str, ...], edit: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(doc))
    holder = out
    for name in where[:-1]:
        holder = holder[name]
    holder[where[-1]] = edit(holder[where[-1]])
    return out


def _flip_pad_bits(text: str) -> str:
    """The same bytes in base64 rqp never writes: a pad bit set (``b64decode(validate=True)`` takes it)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    body = text.rstrip("=")
    assert len(body) % 4, "needs padding to have pad bits"
    return body[:-1] + alphabet[alphabet.index(body[-1]) ^ 1] + text[len(body) :]


C2_EDITS: dict[str, Any] = {
    "format rqp-proof/9": (("format",), lambda v: "rqp-proof/9"),
    "alg junk": (("signature", "alg"), lambda v: "junk"),
    "alg ES256 over an Ed25519 signature": (("signature", "alg"), lambda v: "ES256"),
    "junk before the path": (("path",), lambda v: "!!" + v),
    "a newline in the path": (("path",), lambda v: v[:8] + "\n" + v[8:]),
    "junk before the signature": (("signature", "value"), lambda v: "$$" + v),
    "a newline in the signature": (("signature", "value"), lambda v: v[:8] + "\n" + v[8:]),
    "a pad bit set in the signature": (("signature", "value"), _flip_pad_bits),
    "a hash too many in the path": (("path",), lambda v: base64.b64encode(base64.b64decode(v) + bytes(32)).decode()),
}


@pytest.mark.parametrize("edit", sorted(C2_EDITS))
def test_c2_the_readme_check_refuses_what_check_proof_and_verify_proof_refuse(million, tmp_path, capsys, edit):
    """Was (atk5 C2): the README's check passed a proof with any ``format``, any ``alg`` (all but
    ES256 took the Ed25519 branch), and junk in ``path`` or ``signature.value`` (``b64decode``
    dropped what is not base64), all of which ``check_proof`` and ``rqp verify-proof`` refuse; and
    a junk signature was answered "re-pack the workload", the fix for a manifest, not for an
    edited proof. Now all three refuse each, and the line says the proof was edited."""
    from rqp.cli import main

    doc, pem = million
    where, change = C2_EDITS[edit]
    edited = _b64_edit(doc, where, change)
    assert _readme_check()(doc, pem, "w-million", 654_321) is True  # the genuine proof passes
    assert _readme_check()(edited, pem, "w-million", 654_321) is False
    with pytest.raises(IntegrityError) as err:
        check_proof(json.dumps(edited, separators=(",", ":")).encode(), pem)
    assert "re-pack" not in str(err.value), err.value  # an edited proof: nothing to re-pack
    f, signer = tmp_path / "p.json", tmp_path / "results.pub.pem"
    f.write_text(json.dumps(edited, separators=(",", ":")))
    signer.write_bytes(pem)
    assert main(["verify-proof", str(f), "--signer", str(signer)]) == 4
    line = capsys.readouterr().err
    assert line.count("\n") == 1 and "re-pack" not in line and "Traceback" not in line, line


def test_c2_an_es256_signature_of_other_than_64_bytes_is_refused_by_all_three(tmp_path):
    """The README's check read r and s as bytes 0-32 and 32-64 whatever the length, so a 65-byte
    ES256 value (a byte added after s) passed it while rqp (64 bytes exactly) refused it;
    and an Ed25519 alg over the ES256 key is refused by both."""
    import base64

    doc, pem = _es256_proof(tmp_path)
    readme = _readme_check()
    assert readme(doc, pem, "w-es", 0) is True
    assert check_proof(json.dumps(doc).encode(), pem).startswith("sha256:")
    raw = base64.b64decode(doc["signature"]["value"])
    padded = _b64_edit(doc, ("signature", "value"), lambda v: base64.b64encode(raw + b"\0").decode())
    ed = _b64_edit(doc, ("signature", "alg"), lambda v: "Ed25519")
    for bad in (padded, ed):
        assert readme(bad, pem, "w-es", 0) is False
        with pytest.raises(IntegrityError):
            check_proof(json.dumps(bad).encode(), pem)
