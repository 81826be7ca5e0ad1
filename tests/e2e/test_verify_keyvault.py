"""A results root signed by a Key Vault key (issue #29 item 1, "Key Vault keys allowed"): the real
scheduler, configured with ``RQP_RESULTS_KEY_VAULT_ID``, signs each workload's root through the
vault's ``sign`` operation -- against the local Key Vault REST stub (``tests/keyvault_stub.py``),
reached through the Azure SDK and ``DefaultAzureCredential`` as in production, the private key
created in and never leaving the stub. ``rqp verify``, ``rqp verify-proof`` and the README's plain
check then pass with only the public key exported from the vault, and fail with another key."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from harness import Cluster, bin_path
from keyvault_stub import KeyVaultStub

from rqp.cli import main
from rqp.results_root import STATEMENT_DOMAIN, canonical

SCRIPT = "def process(r):\n    return {'n': r['n'], 'double': r['n'] * 2}\n"
N = 12
README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture(scope="module")
def vault_signed(redis_server, kek, tmp_path_factory) -> Iterator[tuple[Cluster, KeyVaultStub, str, Path, str]]:
    """A workload whose results root the scheduler signed with a Key Vault key; the key's public
    half exported from the vault into a trusted results keys file."""
    r = redis.Redis.from_url(redis_server.url)
    r.flushall()
    r.close()
    root = tmp_path_factory.mktemp("verify-kv")
    stub = KeyVaultStub(root / "vault").start()
    key_id = stub.create_ec_key("results-root")
    c = Cluster(root / "cluster", redis_server.url, kek[0])
    wid = c.pack("verify-kv", c.write_data("kv.jsonl", [{"n": i} for i in range(N)]), c.write_script("kv.py", SCRIPT))
    env = {"RQP_RESULTS_KEY_VAULT_ID": key_id, **stub.env()}
    # the public key as the vault exports it (az keyvault key download --encoding PEM; or rqp signer --results --pem)
    cp = subprocess.run(
        [bin_path("rqp"), "signer", "--results", "--pem"], env={**os.environ, **c.env, **env}, capture_output=True
    )
    assert cp.returncode == 0, cp
    exported = cp.stdout.decode()
    assert exported.split("\n", 1)[1].encode() == stub.public_pem(key_id)
    trusted = root / "trusted-results.pem"
    trusted.write_text(exported)
    c.start_processor(1)
    try:
        code, out = c.schedule(wid, env=env)
        assert code == 0, out
        yield c, stub, wid, trusted, key_id
    finally:
        c.stop()
        stub.stop()


@pytest.fixture
def rqp_cli(vault_signed, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    for k, v in vault_signed[0].env.items():
        if k.startswith("RQP_"):
            monkeypatch.setenv(k, v)

    def run(*args: str) -> tuple[int, str]:
        code = main(list(args))
        got = capsys.readouterr()
        return code, got.out + got.err

    return run


def test_the_vault_signed_the_root_with_es256_its_private_key_never_leaving_it(vault_signed, rqp_cli, tmp_path):
    _c, stub, wid, _trusted, _key_id = vault_signed
    proof_path = tmp_path / "p.json"
    assert rqp_cli("proof", wid, "--record", "3", "-o", str(proof_path))[0] == 0
    proof = json.loads(proof_path.read_text())
    assert proof["signature"]["alg"] == "ES256"
    # the vault was asked to sign exactly the statement's SHA-256 (it never saw a private key leave)
    message = STATEMENT_DOMAIN + canonical(proof["statement"])
    signed = [s for s in stub.signs if s["digest"] == hashlib.sha256(message).digest()]
    assert [(s["key"].split("/")[0], s["alg"]) for s in signed] == [("results-root", "ES256")], stub.signs
    assert stub.unauthenticated >= 1  # the SDK met the vault's challenge, then came with a token
    assert len(base64.b64decode(proof["signature"]["value"])) == 64  # r || s, as the vault returns it


def test_verify_and_verify_proof_pass_with_the_exported_public_key_and_fail_with_another(
    vault_signed, rqp_cli, tmp_path, monkeypatch
):
    _c, _stub, wid, trusted, _key_id = vault_signed
    code, out = rqp_cli("verify", wid, "--signer", str(trusted))
    assert code == 0 and f"{N} records match" in out, out
    monkeypatch.setenv("RQP_TRUSTED_RESULTS_KEYS_FILE", str(trusted))  # the trusted results keys file takes it
    code, out = rqp_cli("verify", wid)
    assert code == 0 and f"{N} records match" in out and "signed by sha256:" in out, out
    proof = tmp_path / "p.json"
    assert rqp_cli("proof", wid, "--record", "7", "-o", str(proof))[0] == 0
    bare = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}  # no KEK, no Redis, no vault: the proof and the key
    cp = subprocess.run([bin_path("rqp"), "verify-proof", str(proof), "--signer", str(trusted)], env=bare, capture_output=True, check=False)  # fmt: skip
    assert b"record 7 of workload verify-kv (result) is in the round 1 root signed by" in cp.stdout, cp
    # the README's plain check (no rqp installed) takes the vault's ES256 signature as well
    block = re.search(r"```python\n(import base64, hashlib, json\n.*?)```", README.read_text(), re.S)
    assert block, "the README's proof check is missing"
    space: dict[str, Any] = {}
    exec(block.group(1), space)  # the README's own code, under test
    assert space["check"](proof.read_bytes(), trusted.read_bytes(), "verify-kv", 7) is True  # the file as written
    doc = json.loads(proof.read_text())
    doc["record"]["value"]["double"] = 15
    assert space["check"](json.dumps(doc), trusted.read_bytes(), "verify-kv", 7) is False
    # another key is not the trusted one
    from rqp.signing import generate_signing_key

    generate_signing_key(tmp_path / "other.pem", tmp_path / "other.pub.pem")
    code, out = rqp_cli("verify", wid, "--signer", str(tmp_path / "other.pub.pem"))
    assert code == 4 and "not a trusted results key" in out, out
    code, out = rqp_cli("verify-proof", str(proof), "--signer", str(tmp_path / "other.pub.pem"))
    assert code == 4 and "not by the trusted key" in out, out
