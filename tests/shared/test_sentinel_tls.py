"""Sentinel over TLS with ACL users of its own: the Sentinel link is verified against the CA and
authenticated as the Sentinel's user, the data link as the role's -- never one's secret on the
other's link. A real TLS-only primary and a real TLS-only Sentinel that requires its own user."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import redis
from redis_server import free_port
from security.test_tls import TLSRedis, _write_pem, tls_server_binary
from sentinel_group import wait_until

from rqp.config import Settings
from rqp.connect import connect_redis
from rqp.errors import RedisUnavailableError

SERVICE = "rqp"
SENTINEL_USER = "sentinel-reader"


class TLSSentinel:
    def __init__(self, primary: TLSRedis, d: Path) -> None:
        self.primary = primary
        self.dir = d
        self.port = free_port()
        self.password = secrets.token_urlsafe(24)
        self.password_file = _write_pem(d / "sentinel-password", self.password.encode() + b"\n", private=True)
        self.proc: subprocess.Popen | None = None

    def start(self) -> TLSSentinel:
        conf = self.dir / "sentinel.conf"
        p = self.primary
        conf.write_text(
            f"port 0\ntls-port {self.port}\nbind 127.0.0.1\ndir {self.dir}\nprotected-mode no\n"
            f"tls-cert-file {p.cert}\ntls-key-file {p.key}\ntls-ca-cert-file {p.ca}\ntls-auth-clients no\n"
            "tls-replication yes\n"  # Sentinel reaches the primary over TLS too
            f"user default off\nuser {SENTINEL_USER} on >{self.password} +@all\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {p.port} 1\n"
            f"sentinel auth-pass {SERVICE} {p.password}\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
        )
        binary = shutil.which("redis-sentinel")
        cmd = [binary, str(conf)] if binary else [tls_server_binary(), str(conf), "--sentinel"]
        with open(self.dir / "sentinel.log", "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        wait_until(self._sees_the_primary, 30, "the TLS Sentinel to see the primary")
        return self

    def _sees_the_primary(self) -> bool:
        s = redis.Redis(
            host="127.0.0.1",
            port=self.port,
            username=SENTINEL_USER,
            password=self.password,
            ssl=True,
            ssl_ca_certs=str(self.primary.ca),
            socket_timeout=1,
            decode_responses=True,
        )
        try:
            state = s.sentinel_master(SERVICE)
            return bool(state["is_master"]) and not state["is_sdown"]
        finally:
            s.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture(scope="module")
def tls_pair():
    d = Path(tempfile.mkdtemp(prefix="rqp-sentinel-tls-"))
    primary = TLSRedis(tls_server_binary(), d).start()
    sentinel = TLSSentinel(primary, d).start()
    yield primary, sentinel
    sentinel.stop()
    primary.stop()
    shutil.rmtree(d, ignore_errors=True)


def _settings(primary: TLSRedis, sentinel: TLSSentinel, **over) -> Settings:
    values = {
        "redis_url": f"rediss+sentinel://127.0.0.1:{sentinel.port}/{SERVICE}/0",
        "redis_password_file": str(primary.password_file),
        "redis_ca_file": str(primary.ca),
        "redis_sentinel_username": SENTINEL_USER,
        "redis_sentinel_password_file": str(sentinel.password_file),
    }
    return Settings.from_mapping({**values, **over})


def test_the_sentinel_and_the_data_link_each_use_tls_and_their_own_credentials(tls_pair):
    primary, sentinel = tls_pair
    r = connect_redis(_settings(primary, sentinel))
    try:
        r.set("through-sentinel", "yes")
        assert primary.client().get("through-sentinel") == b"yes"
        assert r.connection_pool.get_master_address() == ("127.0.0.1", primary.port)
    finally:
        r.close()


@pytest.mark.parametrize(
    ("over", "says"),
    [
        # the data password on the Sentinel link: refused there (the two are kept apart)
        ({"redis_sentinel_password_file": "DATA"}, "no Sentinel answered"),
        ({"redis_sentinel_username": None, "redis_sentinel_password_file": None}, "no Sentinel answered"),
        ({"redis_ca_file": None}, "no Sentinel answered"),  # the Sentinel's certificate is verified
        ({"redis_password_file": "SENTINEL"}, "refused the password"),  # and the data link's password is its own
    ],
)
def test_a_wrong_credential_or_no_ca_on_either_link_is_refused_in_one_line(tls_pair, over, says):
    primary, sentinel = tls_pair
    files = {"DATA": str(primary.password_file), "SENTINEL": str(sentinel.password_file)}
    over = {k: files.get(v, v) if isinstance(v, str) else v for k, v in over.items()}
    with pytest.raises(RedisUnavailableError, match=says) as info:
        connect_redis(_settings(primary, sentinel, **over))
    assert "\n" not in str(info.value)
