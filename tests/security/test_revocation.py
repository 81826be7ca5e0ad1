"""Revocation that revokes (issue #23 item 6): a key in a comment is never trusted, and a revoked
key is refused before any trust, whatever else the trusted file holds."""

from __future__ import annotations

import pytest

from rqp.errors import IntegrityError
from rqp.signing import LocalSigningKey, TrustStore, generate_signing_key

MESSAGE = b"rqp-workload-signature/1\nanything"


@pytest.fixture
def alice(tmp_path):
    generate_signing_key(tmp_path / "alice.pem")
    return LocalSigningKey(tmp_path / "alice.pem")


@pytest.fixture
def bob(tmp_path):
    generate_signing_key(tmp_path / "bob.pem")
    return LocalSigningKey(tmp_path / "bob.pem")


def _one_line(pem: bytes) -> bytes:
    return b" ".join(pem.split())


def test_a_key_on_a_revoked_comment_line_is_not_trusted(tmp_path, alice, bob):
    f = tmp_path / "signers.pem"
    f.write_bytes(b"# bob\n" + bob.public_pem() + b"# revoked: " + _one_line(alice.public_pem()) + b"\n")
    trust = TrustStore.from_file(f)
    assert alice.fingerprint not in trust.signers
    with pytest.raises(IntegrityError, match="which is revoked"):  # the one-line key is read, and revoked
        trust.verify("w", MESSAGE, alice.signature(MESSAGE))
    assert trust.verify("w", MESSAGE, bob.signature(MESSAGE)).fingerprint == bob.fingerprint


def test_a_pem_with_commented_body_lines_is_not_a_key(tmp_path, alice, bob):
    commented = b"\n".join(b"# " + line for line in alice.public_pem().splitlines()) + b"\n"
    f = tmp_path / "signers.pem"
    f.write_bytes(bob.public_pem() + commented)
    assert set(TrustStore.from_file(f).signers) == {bob.fingerprint}


def test_a_revoked_line_beats_the_key_still_in_the_file(tmp_path, alice, bob):
    f = tmp_path / "signers.pem"
    f.write_bytes(alice.public_pem() + bob.public_pem() + f"revoked: {alice.fingerprint}\n".encode())
    trust = TrustStore.from_file(f)
    with pytest.raises(IntegrityError, match="revoked"):
        trust.verify("w", MESSAGE, alice.signature(MESSAGE))


def test_a_revoked_signers_file_revokes(tmp_path, alice, bob):
    f = tmp_path / "signers.pem"
    f.write_bytes(alice.public_pem() + bob.public_pem())
    revoked = tmp_path / "revoked.pem"
    revoked.write_bytes(b"# alice's laptop was stolen\n" + alice.public_pem())
    trust = TrustStore.from_file(f, revoked)
    with pytest.raises(IntegrityError, match="revoked"):
        trust.verify("w", MESSAGE, alice.signature(MESSAGE))
    assert trust.verify("w", MESSAGE, bob.signature(MESSAGE)).fingerprint == bob.fingerprint


@pytest.mark.parametrize(
    "line",
    [
        "revoked: {FP}",
        "revoked: {FPU}",
        "revoked: {FP}  # leaked 2026-12-06",
        "# revoked: {FP}",
        "REVOKED: {FP}\r",
    ],
)
def test_revocation_lines_fail_closed_in_any_spelling(tmp_path, alice, bob, line):
    """Review of #23: upper case, a trailing remark, a comment mark or a CRLF each made the line
    silently ignored and the key trusted."""
    text = line.replace("{FP}", alice.fingerprint).replace("{FPU}", alice.fingerprint.upper())
    f = tmp_path / "signers.pem"
    f.write_bytes(alice.public_pem() + bob.public_pem() + text.encode() + b"\n")
    with pytest.raises(IntegrityError, match="revoked"):
        TrustStore.from_file(f).verify("w", MESSAGE, alice.signature(MESSAGE))


def test_a_revoked_signers_file_with_crlf_and_bare_fingerprints_revokes(tmp_path, alice, bob):
    f = tmp_path / "signers.pem"
    f.write_bytes(alice.public_pem() + bob.public_pem())
    revoked = tmp_path / "revoked.txt"
    revoked.write_bytes(f"{alice.fingerprint.upper()}\r\n".encode())
    with pytest.raises(IntegrityError, match="revoked"):
        TrustStore.from_file(f, revoked).verify("w", MESSAGE, alice.signature(MESSAGE))


def test_a_revoked_line_without_a_fingerprint_is_refused_at_start(tmp_path, alice):
    from rqp.errors import ConfigError

    f = tmp_path / "signers.pem"
    f.write_bytes(alice.public_pem() + b"revoked: alice's old laptop key\n")
    with pytest.raises(ConfigError, match="names no key fingerprint"):
        TrustStore.from_file(f)
