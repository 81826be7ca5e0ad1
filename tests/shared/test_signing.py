"""Submitter signatures: Ed25519 files and EC P-256 Key Vault keys, and the trusted-signers file."""

from __future__ import annotations

import json

import pytest
from azure.keyvault.keys import JsonWebKey
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from rqp.azure.signing import KeyVaultSigningKey
from rqp.errors import ConfigError, IntegrityError, KeyProviderError
from rqp.keys import LocalKeyProvider
from rqp.signing import ES256, LocalSigningKey, TrustStore, generate_signing_key
from rqp.storage import FileBlobStore
from rqp.workload import Manifest, Workload, blob_name, pack


def _vault_key(
    kid: str = "https://vault.vault.azure.net/keys/signer/v1",
) -> tuple[JsonWebKey, ec.EllipticCurvePrivateKey]:
    k = ec.generate_private_key(ec.SECP256R1())
    n = k.private_numbers()
    b = lambda i: i.to_bytes(32, "big")  # noqa: E731
    jwk = JsonWebKey(
        kid=kid,
        kty="EC",
        crv="P-256",
        x=b(n.public_numbers.x),
        y=b(n.public_numbers.y),
        d=b(n.private_value),
        key_ops=["sign", "verify"],
    )
    return jwk, k


def _trust(tmp_path, *pems: bytes) -> TrustStore:
    path = tmp_path / "trusted.pem"
    path.write_bytes(b"".join(b"# signer %d\n" % i + pem for i, pem in enumerate(pems)))
    return TrustStore.from_file(path)


def test_generated_key_is_private_and_never_overwritten(tmp_path):
    fp = generate_signing_key(tmp_path / "k" / "s.pem")
    assert (tmp_path / "k" / "s.pem").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "k" / "s.pub.pem").exists()
    assert LocalSigningKey(tmp_path / "k" / "s.pem").fingerprint == fp
    with pytest.raises(KeyProviderError, match="already exists"):
        generate_signing_key(tmp_path / "k" / "s.pem")


def test_bad_signing_key_files_are_one_clear_error(tmp_path):
    with pytest.raises(KeyProviderError, match="does not exist; create one with 'rqp keygen --signing'"):
        LocalSigningKey(tmp_path / "nope.pem")
    rsa_pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (tmp_path / "rsa.pem").write_bytes(rsa_pem)
    with pytest.raises(KeyProviderError, match="is not an Ed25519 key"):
        LocalSigningKey(tmp_path / "rsa.pem")


def test_trusted_signers_file_names_keys_and_rejects_what_it_cannot_use(tmp_path):
    generate_signing_key(tmp_path / "a.pem")
    jwk, _vault = _vault_key()
    store = _trust(tmp_path, (tmp_path / "a.pub.pem").read_bytes(), KeyVaultSigningKey.from_jwk(jwk).public_pem())
    names = sorted(s.name for s in store.signers.values())
    assert names == ["signer 0", "signer 1"]
    assert {s.alg for s in store.signers.values()} == {"Ed25519", "ES256"}
    rsa_pub = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    (tmp_path / "bad.pem").write_bytes(rsa_pub)
    with pytest.raises(ConfigError, match=r"key 1 in trusted signers file .* is not an Ed25519 or EC P-256 public key"):
        TrustStore.from_file(tmp_path / "bad.pem")
    with pytest.raises(ConfigError, match="does not exist; fix RQP_TRUSTED_SIGNERS_FILE"):
        TrustStore.from_file(tmp_path / "absent.pem")


@pytest.mark.parametrize("kind", ["ed25519", "key-vault-es256"])
def test_pack_signs_and_open_verifies_with_either_kind_of_key(tmp_path, kek, kind):
    if kind == "ed25519":
        generate_signing_key(tmp_path / "s.pem")
        signer = LocalSigningKey(tmp_path / "s.pem")
    else:
        jwk, _ = _vault_key()
        signer = KeyVaultSigningKey.from_jwk(jwk)  # the production client class, signing locally on the JWK
        assert signer.alg == ES256
    trust = _trust(tmp_path, signer.public_pem())
    store = FileBlobStore(tmp_path / "blobs")
    (tmp_path / "d.jsonl").write_text('{"n": 1}\n')
    (tmp_path / "s.py").write_text("def process(r):\n    return r\n")
    m = pack(
        store, LocalKeyProvider(public_key_file=kek[1]), "w1", tmp_path / "d.jsonl", tmp_path / "s.py", signer=signer
    )
    assert m.signature and m.signature["signer"] == signer.fingerprint and m.signature["alg"] == signer.alg
    keys = LocalKeyProvider(private_key_file=kek[0])
    w = Workload.open(store, keys, "w1", trust)
    assert w.signer == signer.fingerprint
    # the signature covers the wrapped key: another (valid) wrapping of the same data key is refused
    store.put(blob_name("w1", "key.json"), keys.wrap(w.key).to_json())
    with pytest.raises(IntegrityError, match=f"workload w1 differs from what {signer.fingerprint} signed"):
        Workload.open(store, keys, "w1", trust)


def test_content_digest_survives_rotation_but_not_a_new_pack(tmp_path, kek, signer):
    store = FileBlobStore(tmp_path / "blobs")
    (tmp_path / "d.jsonl").write_text('{"n": 1}\n')
    (tmp_path / "s.py").write_text("def process(r):\n    return r\n")
    m1 = pack(
        store,
        LocalKeyProvider(public_key_file=kek[1]),
        "w1",
        tmp_path / "d.jsonl",
        tmp_path / "s.py",
        signer=signer.key,
    )
    rotated = Manifest.from_json(json.dumps({**json.loads(m1.to_json()), "kek_id": "sha256:other"}).encode(), "w1")
    assert rotated.content_digest() == m1.content_digest()
    m2 = pack(
        store,
        LocalKeyProvider(public_key_file=kek[1]),
        "w1",
        tmp_path / "d.jsonl",
        tmp_path / "s.py",
        signer=signer.key,
        replace=True,
    )
    assert m2.content_digest() != m1.content_digest()  # same inputs, a new workload (new data key, time)


def test_pin_opens_only_for_the_workload_that_made_it(tmp_path, kek, signer):
    store = FileBlobStore(tmp_path / "blobs")
    (tmp_path / "d.jsonl").write_text('{"n": 1}\n')
    (tmp_path / "s.py").write_text("def process(r):\n    return r\n")
    keys = LocalKeyProvider(private_key_file=kek[0])
    pack(store, keys, "w1", tmp_path / "d.jsonl", tmp_path / "s.py", signer=signer.key)
    w1 = Workload.open(store, keys, "w1", signer.trust)
    pin = w1.seal_pin()
    w1.check_pin(pin)
    pack(store, keys, "w1", tmp_path / "d.jsonl", tmp_path / "s.py", signer=signer.key, replace=True)
    w1b = Workload.open(store, keys, "w1", signer.trust)
    with pytest.raises(IntegrityError, match="workload w1 was replaced while unfinished"):
        w1b.check_pin(pin)
    with pytest.raises(IntegrityError, match="has no start pin in Redis"):
        w1b.check_pin(None)
