"""Redis between VMs, for real: a TLS-only redis-server with ``--protected-mode yes``, loading the
ACL file ``rqp redis-acl init`` writes (the code path ``compose/init-secrets.sh`` runs), with the
certificates that command made.

What a role's password lets it do is checked command by command (admin commands, keys outside
the role's patterns, writes from the console's read-only user, the console's actions user kept to
the workloads, a submitter that can only submit, the commands the ledger's Lua scripts run), who
gets in at all (no CA, another CA, a name not in the certificate, the default user), and that the
real roles -- serving scheduler, processor, submitter, metrics logger, the rqp CLI, rqp-console --
run a workload end to end, each with its own user, without Redis refusing them a single command
(its ACL LOG stays empty).

The server's ACL is the rendered file plus one inspection user of the test's own (``ADMIN``),
used only to read the ACL LOG and reset the database between tests.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import redis
from azurite import free_port
from console.helpers import Client as ConsoleClient
from console.helpers import ConsoleServer
from cryptography.hazmat.primitives import serialization
from harness import Cluster, bin_path
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis_server import RedisServer

from rqp.config import Settings
from rqp.connect import connect_redis
from rqp.errors import RedisUnavailableError
from rqp.ledger import (
    AUDIT,
    AUDIT_HEAD,
    FLEET,
    OUTBOX,
    PRIORITIES,
    REFUSED,
    REJECTED,
    SUBMISSIONS,
    SUBMITTED_CHANNEL,
    TOMBSTONES,
    WORKLOADS,
    WorkloadKeys,
)
from rqp.redis_acl import (
    ACL_FILE,
    CA_CERT_FILE,
    CA_KEY_FILE,
    ROLES,
    SERVER_CERT_FILE,
    SERVER_KEY_FILE,
    password_hash,
    render_acl,
    server_names,
)

from .conftest import QUEUE, job_data, one_error_line, push_raw_job, rejection_for, wait_until
from .test_tls import make_ca, tls_server_binary

HOST = "scheduler-vm.rqp.test"  # the scheduler VM's name the certificate is issued for
ADMIN = "rqp-test-admin"
LEDGER_LUA = Path(__file__).resolve().parents[2] / "shared" / "src" / "rqp" / "ledger" / "lua"
SCRIPT = "def process(record):\n    if record['n'] < 0:\n        raise ValueError('negative')\n    return {'double': record['n'] * 2}\n"


class AclRedis(RedisServer):
    """A redis-server on TLS only (127.0.0.1 and 127.0.0.2, a name the certificate does not hold),
    protected mode on, users from ``secrets_dir``'s ACL file."""

    def __init__(self, binary: str, secrets_dir: Path, d: Path) -> None:
        super().__init__(dir=str(d))
        self.binary = binary
        self.secrets = secrets_dir
        self.ca = secrets_dir / CA_CERT_FILE
        self.admin_password = secrets.token_hex(24)
        self.acl = d / "users.acl"
        self.acl.write_text(
            (secrets_dir / ACL_FILE).read_text()
            + f"user {ADMIN} on #{password_hash(self.admin_password)} +@all ~* &*\n"
        )

    @property
    def url(self) -> str:
        return f"rediss://127.0.0.1:{self.port}/0"

    def role_url(self, user: str, host: str = "127.0.0.1") -> str:
        return f"rediss://{user}@{host}:{self.port}/0"

    def password_file(self, user: str) -> Path:
        return self.secrets / next(r.password_file for r in ROLES if r.user == user)

    def command(self) -> list[str]:
        s = self.secrets
        return [
            self.binary,
            "--port", "0",
            "--tls-port", str(self.port),
            "--bind", "127.0.0.1", "127.0.0.2",
            "--tls-cert-file", str(s / SERVER_CERT_FILE),
            "--tls-key-file", str(s / SERVER_KEY_FILE),
            "--tls-ca-cert-file", str(self.ca),
            "--tls-auth-clients", "no",
            "--aclfile", str(self.acl),
            "--protected-mode", "yes",
            "--dir", self.dir,
            "--save", "",
            "--appendonly", "no",
        ]  # fmt: skip

    def client(self, **kw: Any) -> redis.Redis:
        """The test's inspection client."""
        return self.as_user(ADMIN, self.admin_password, **kw)

    def as_user(self, user: str | None, password: str | None, host: str = "127.0.0.1", **kw: Any) -> redis.Redis:
        kw.setdefault("ssl_ca_certs", str(self.ca))
        kw.setdefault("socket_connect_timeout", 2)
        kw.setdefault("socket_timeout", 5)
        kw.setdefault("retry", Retry(NoBackoff(), 0))  # a refusal is the answer: no retries
        return redis.Redis(
            host=host,
            port=self.port,
            username=user,
            password=password,
            ssl=True,
            ssl_cert_reqs="required",
            ssl_check_hostname=True,
            **kw,
        )

    def as_role(self, user: str, **kw: Any) -> redis.Redis:
        return self.as_user(user, self.password_file(user).read_text().strip(), **kw)

    def env(self, user: str) -> dict[str, str]:
        """The settings a role's container gets (compose/*.yml), pointing here."""
        return {
            "RQP_REDIS_URL": self.role_url(user),
            "RQP_REDIS_PASSWORD_FILE": str(self.password_file(user)),
            "RQP_REDIS_CA_FILE": str(self.ca),
            "RQP_ALLOW_INSECURE_REDIS": "false",
        }


def _init(directory: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [bin_path("rqp"), "redis-acl", "init", str(directory), *args], capture_output=True, timeout=60
    )


@pytest.fixture(scope="module")
def acl_secrets(tmp_path_factory) -> Path:
    """``rqp redis-acl init DIR --host HOST``, as compose/init-secrets.sh runs it."""
    d = tmp_path_factory.mktemp("redis-secrets")
    cp = _init(d, "--host", HOST)
    assert cp.returncode == 0, cp.stderr
    return d


@pytest.fixture(scope="module")
def acl_server(acl_secrets):
    d = Path(tempfile.mkdtemp(prefix="rqp-acl-"))
    server = AclRedis(tls_server_binary(), acl_secrets, d).start()
    yield server
    server.stop()
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def srv(acl_server) -> AclRedis:
    """The module's server with an empty database and an empty ACL LOG."""
    admin = acl_server.client()
    admin.flushall()
    admin.acl_log_reset()
    admin.close()
    return acl_server


def refused(client: redis.Redis, *command: Any) -> str:
    """Run ``command``; it must be refused by the ACL (NOPERM). Returns Redis's message."""
    with pytest.raises(redis.exceptions.NoPermissionError) as info:
        client.execute_command(*command)
    return str(info.value)


# ------------------------------------------------------------------------------ the files
def test_init_writes_every_file_once_with_tight_modes_and_no_plaintext_password(acl_secrets, tmp_path):
    modes = {p.name: p.stat().st_mode & 0o777 for p in acl_secrets.iterdir()}
    for role in ROLES:
        assert modes[role.password_file] == 0o400, role
    assert modes[CA_KEY_FILE] == 0o400 and modes[SERVER_KEY_FILE] == 0o400 and modes[ACL_FILE] == 0o400
    assert modes[CA_CERT_FILE] == 0o444 and modes[SERVER_CERT_FILE] == 0o444
    assert set(server_names(acl_secrets / SERVER_CERT_FILE)) == {HOST, "redis", "localhost", "127.0.0.1"}

    acl = (acl_secrets / ACL_FILE).read_text()
    passwords = {r.user: (acl_secrets / r.password_file).read_text().strip() for r in ROLES}
    for user, password in passwords.items():
        assert password not in acl
        assert f"user {user} reset resetchannels on #{password_hash(password)} " in acl
    assert acl.splitlines()[0] == "user default off resetpass resetkeys resetchannels -@all"
    assert acl == render_acl({u: password_hash(p) for u, p in passwords.items()})

    # run again: nothing is made or replaced, and a host the certificate lacks is pointed out
    before = {p.name: p.read_bytes() for p in acl_secrets.iterdir()}
    cp = _init(acl_secrets, "--host", "10.9.8.7")
    assert cp.returncode == 0 and cp.stdout.strip() == b"", cp.stdout
    assert b"does not name 10.9.8.7" in cp.stderr
    assert {p.name: p.read_bytes() for p in acl_secrets.iterdir()} == before

    # a new server certificate needs the CA key; without it, one clear line
    d = tmp_path / "s"
    assert _init(d).returncode == 0
    (d / SERVER_CERT_FILE).unlink()
    (d / SERVER_KEY_FILE).unlink()
    (d / CA_KEY_FILE).unlink()
    cp = _init(d, "--host", HOST)
    assert cp.returncode == 2 and "needs the CA key" in one_error_line(cp, "rqp"), cp.stderr


def test_the_ledger_scripts_run_only_commands_their_roles_may_run(srv):
    """Commands a Lua script runs are checked against the caller's ACL: every command the
    ledger's scripts call must be allowed to the roles that call them, on a workload's keys."""
    admin = srv.client()
    calls = set()
    for lua in LEDGER_LUA.glob("*.lua"):
        calls |= {m.upper() for m in re.findall(r"redis\.p?call\(\s*'([A-Za-z]+)'", lua.read_text())}
    assert {"HSET", "ZADD", "SETBIT"} <= calls, calls  # the scan found the scripts' calls
    key = WorkloadKeys("w").meta
    table = admin.command()  # COMMAND: every command's arity
    for command in sorted(calls):
        arity = table[command.lower()]["arity"]
        args = [key, *["1"] * (abs(arity) - 2)]
        for user in ("scheduler", "processor"):
            assert admin.execute_command("ACL", "DRYRUN", user, command, *args) in (b"OK", "OK"), (user, command)
    # the roles that post signed requests run post_control.lua: each command it calls is allowed on
    # the key it calls it on (GET/SET the audit head, LPUSH/LTRIM the chain, RPUSH the request list)
    posted = {
        m.upper() for m in re.findall(r"redis\.p?call\(\s*'([A-Za-z]+)'", (LEDGER_LUA / "post_control.lua").read_text())
    }
    assert {"GET", "SET", "RPUSH", "LPUSH", "LTRIM", "HGET", "HSET", "HDEL", "EXISTS"} == posted, posted
    w = WorkloadKeys("w")
    on = {
        "GET": (AUDIT_HEAD,),
        "SET": (AUDIT_HEAD, "x"),
        "LPUSH": (AUDIT, "x"),
        "LTRIM": (AUDIT, "0", "1"),
        "RPUSH": (w.control, "x"),
        "HGET": (w.meta, "state"),
        "HSET": (w.meta, "state", "paused"),
        "HDEL": (w.meta, "control"),
        "EXISTS": (w.lock,),
    }
    for user, commands in (("console-actions", posted), ("submitter", posted - {"HSET", "HDEL"})):
        for command in sorted(commands):
            got = admin.execute_command("ACL", "DRYRUN", user, command, *on[command])
            assert got in (b"OK", "OK"), (user, command, got)
        keys = (w.meta, w.control, w.lock, AUDIT, AUDIT_HEAD, SUBMISSIONS)
        got = admin.execute_command("ACL", "DRYRUN", user, "EVALSHA", "0" * 40, len(keys), *keys)
        assert got in (b"OK", "OK"), (user, got)
    # a Redis that lacks a script (restarted, SCRIPT FLUSH) gets it loaded and run in one MULTI/EXEC
    # (rqp.ledger.LuaScript): every role that runs the ledger's scripts may send those
    for user in ("scheduler", "processor", "console-actions", "submitter"):
        for command in (("MULTI",), ("EXEC",), ("SCRIPT", "LOAD", "return 1")):
            got = admin.execute_command("ACL", "DRYRUN", user, *command)
            assert got in (b"OK", "OK"), (user, command, got)
    # the submitter posts no advisory state change: it may not write a workload's state
    assert admin.execute_command("ACL", "DRYRUN", "submitter", "HSET", w.meta, "state", "done") not in (b"OK", "OK")
    assert admin.execute_command("ACL", "DRYRUN", "console", "HSET", key, "f", "v") != b"OK"


# ------------------------------------------------------------------------------ who gets in
def test_a_client_without_the_ca_or_with_another_ca_cannot_connect(srv, tmp_path):
    _key, other = make_ca("another CA")
    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_bytes(other.public_bytes(serialization.Encoding.PEM))
    password = srv.password_file("processor").read_text().strip()
    for ca in (None, str(other_ca)):  # None: the system's CAs, which do not know rqp's
        client = srv.as_user("processor", password, ssl_ca_certs=ca)
        with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
            client.ping()
    # and a role started that way stops at once with one line saying so
    env = {**srv.env("processor"), "RQP_REDIS_CA_FILE": ""}
    cp = subprocess.run([bin_path("rqp"), "list"], env={**os.environ, **env}, capture_output=True, timeout=60)
    line = one_error_line(cp, "rqp")
    assert cp.returncode == 6 and "certificate verify failed" in line.lower(), line


def test_a_client_reaching_the_server_by_a_name_not_in_its_certificate_is_refused(srv):
    good = srv.as_role("processor")
    assert good.ping()  # 127.0.0.1 is in the certificate
    wrong = srv.as_role("processor", host="127.0.0.2")  # the same server, an address it was not issued for
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        wrong.ping()
    with pytest.raises(RedisUnavailableError, match="certificate verify failed"):
        connect_redis(
            Settings.load(env={**srv.env("processor"), "RQP_REDIS_URL": srv.role_url("processor", "127.0.0.2")})
        )
    settings = Settings.load(env=srv.env("processor"))
    assert connect_redis(settings).ping()


def test_the_default_user_and_wrong_passwords_are_refused(srv):
    anonymous = srv.as_user(None, None)
    with pytest.raises(redis.AuthenticationError):
        anonymous.ping()
    for user, password in (("default", ""), ("default", "nopass"), ("processor", "guess"), ("nobody", "x")):
        with pytest.raises(redis.AuthenticationError):
            srv.as_user(user, password).ping()
    # one role's password is not another's
    with pytest.raises(redis.AuthenticationError):
        srv.as_user("scheduler", srv.password_file("processor").read_text().strip()).ping()
    # rqp's own check: a server that lets anyone in is refused; this one does not, so roles start
    assert connect_redis(Settings.load(env=srv.env("submitter"))).ping()


# ------------------------------------------------------------------------------ what each role may do
ADMIN_COMMANDS = [
    ("CONFIG", "SET", "maxmemory", "1"),
    ("CONFIG", "GET", "*"),
    ("FLUSHALL",),
    ("FLUSHDB",),
    ("ACL", "LIST"),
    ("ACL", "SETUSER", "intruder", "on", ">x", "+@all", "~*"),
    ("ACL", "LOG"),
    ("KEYS", "*"),
    ("SCAN", "0"),
    ("CLIENT", "LIST"),
    ("CLIENT", "KILL", "ID", "1"),
    ("CLIENT", "TRACKING", "on"),
    ("SELECT", "1"),
    ("SWAPDB", "0", "1"),
    ("MODULE", "LIST"),
    ("SAVE",),
    ("BGREWRITEAOF",),
    ("REPLICAOF", "127.0.0.1", "1"),
    ("SCRIPT", "FLUSH"),
    ("EVAL", "return 1", "0"),
    ("FUNCTION", "FLUSH"),
    ("SHUTDOWN", "NOSAVE"),
]


@pytest.mark.parametrize("user", [r.user for r in ROLES])
def test_no_role_may_administer_the_server(srv, user):
    client = srv.as_role(user)
    assert client.ping()
    for command in ADMIN_COMMANDS:
        assert "no permissions" in refused(client, *command), command
    assert srv.client().ping()  # still up (SHUTDOWN was refused)


def test_the_processor_touches_only_its_keys(srv):
    p = srv.as_role("processor")
    meta = WorkloadKeys("w1").meta
    assert p.hset(meta, "processor_error", "x") == 1 and p.set("rq:job:x", "1")
    assert p.rpush(REJECTED, "{}") == 1 and p.xadd("rqp:mq:rqp-status", {"b": b"x"})
    for command in (
        ("RPUSH", SUBMISSIONS, "w-forged"),  # cannot hand a workload to the scheduler
        ("ZADD", WORKLOADS, "1", "w"),
        ("XADD", "rqp:mq:rqp-events", "*", "b", "x"),  # nor forge events
        ("XREADGROUP", "GROUP", "rqp", "rqp", "COUNT", "1", "STREAMS", "rqp:mq:rqp-status", ">"),  # nor consume them
        ("XADD", "rqp:mq:rqp-metrics", "*", "b", "x"),
        ("SET", "anything-else", "1"),
        ("GET", "rqp:anything"),
        ("HGETALL", "rqp:w"),
    ):
        assert "no permissions" in refused(p, *command), command
    # a script runs with its caller's rights: no detour through Lua
    sha = p.script_load("return redis.call('RPUSH', KEYS[1], 'w-forged')")
    assert "no permissions" in refused(p, "EVALSHA", sha, "1", SUBMISSIONS)
    sha = p.script_load("return redis.call('RPUSH', 'rqp:submissions', 'w-forged')")
    with pytest.raises(redis.ResponseError, match="can't access at least one of the keys"):
        p.evalsha(sha, 1, WorkloadKeys("w1").meta)
    assert srv.client().llen(SUBMISSIONS) == 0


def test_the_console_reads_and_writes_nothing(srv):
    admin = srv.client()
    admin.sadd("rq:queues", "rq:queue:rqp")
    admin.hset(WorkloadKeys("w1").meta, "state", "running")
    c = srv.as_role("console")
    assert c.smembers("rq:queues") == {b"rq:queue:rqp"} and c.llen("rq:queue:rqp") == 0
    assert c.hgetall(WorkloadKeys("w1").meta) == {b"state": b"running"}  # rqp's keys: read
    admin.set(AUDIT_HEAD, "ab" * 32)
    assert c.get(AUDIT_HEAD) == b"ab" * 32 and c.lrange(AUDIT, 0, -1) == []  # the audit chain: read
    for command in (
        ("SET", AUDIT_HEAD, "0" * 64),
        ("GET", "rq:x"),  # GET reaches the audit head only
        ("GET", WorkloadKeys("w1").prefix + "done"),
        ("SET", "rq:x", "1"),
        ("HSET", "rq:job:x", "status", "queued"),
        ("LPUSH", "rq:queue:rqp", "x"),
        ("DEL", "rq:queues"),
        ("SREM", "rq:queues", "rq:queue:rqp"),
        ("ZADD", "rq:failed:rqp", "1", "x"),
        ("XADD", "rq:results:x", "*", "a", "b"),
        ("HSET", WorkloadKeys("w1").meta, "state", "done"),
        ("DEL", WorkloadKeys("w1").meta),
        ("RPUSH", SUBMISSIONS, "w-forged"),
        ("LPUSH", AUDIT, "{}"),
        ("ZADD", WORKLOADS, "1", "w"),
        ("HGETALL", "elsewhere"),  # nothing outside rq:* and rqp:*
        ("EVAL", "return 1", "0"),
        ("EVALSHA", "0" * 40, "0"),
        ("SCRIPT", "LOAD", "return 1"),
        ("PUBLISH", "rq:pubsub:rqp-x", "{}"),
        ("MULTI",),
    ):
        assert "no permissions" in refused(c, *command), command
    assert admin.smembers("rq:queues") == {b"rq:queue:rqp"}
    assert admin.hget(WorkloadKeys("w1").meta, "state") == b"running" and admin.llen(SUBMISSIONS) == 0


def test_the_console_actions_reach_only_the_workloads_the_audit_log_and_the_submissions(srv):
    admin = srv.client()
    a = srv.as_role("console-actions")
    meta = WorkloadKeys("w1").meta
    assert a.hset(meta, "state", "paused") == 1 and a.hget(meta, "state") == b"paused"
    assert a.lpush(AUDIT, "{}") == 1 and a.rpush(SUBMISSIONS, "w1") == 1
    assert a.set(AUDIT_HEAD, "0" * 64) and a.get(AUDIT_HEAD) == b"0" * 64  # the audit chain's head
    assert a.rpush(WorkloadKeys("w1").control, "{}") == 1  # a workload's signed requests
    for command in (
        ("SET", WorkloadKeys("w1").prefix + "done", "x"),  # GET/SET reach the audit head only
        ("GET", "rq:x"),
        ("HSET", TOMBSTONES, "x", "y"),  # the console deletes nothing
        ("LPUSH", AUDIT_HEAD, "x"),
        ("LRANGE", "rq:queue:rqp", "0", "-1"),  # nothing of RQ's
        ("LPUSH", "rq:queue:rqp", "x"),
        ("HSET", "rq:job:x", "status", "queued"),
        ("SMEMBERS", "rq:workers"),
        ("LPUSH", REJECTED, "x"),  # nor the processors' or the scheduler's own keys
        ("HSET", f"{FLEET}:h", "pid", "1"),
        ("HSET", OUTBOX, "w1", "x"),
        ("ZADD", WORKLOADS, "1", "w"),
        ("XADD", "rqp:mq:rqp-status", "*", "b", "x"),
        ("DEL", meta),  # and on the workloads only what rqp.control runs
        ("SETBIT", WorkloadKeys("w1").prefix + "done", "1", "1"),
        ("EVAL", "return 1", "0"),
    ):
        assert "no permissions" in refused(a, *command), command
    # a script runs with its caller's rights: no detour to RQ's keys through Lua
    sha = a.script_load("return redis.call('LPUSH', KEYS[1], 'x')")
    assert "no permissions" in refused(a, "EVALSHA", sha, "1", "rq:queue:rqp")
    assert admin.llen("rq:queue:rqp") == 0 and admin.llen(REJECTED) == 0


def test_the_submitter_can_only_submit(srv, tmp_path, kek):
    s = srv.as_role("submitter")
    assert s.rpush(SUBMISSIONS, "w1") == 1
    assert s.publish(SUBMITTED_CHANNEL, "") == 0  # the wake-up for a serving scheduler: nobody listens here
    for command in (
        ("LRANGE", SUBMISSIONS, "0", "-1"),  # cannot even see what others submitted
        ("LRANGE", AUDIT, "0", "-1"),  # appends to the audit chain, reads none of it
        ("DEL", AUDIT),
        ("RPUSH", AUDIT, "x"),
        ("LPUSH", WorkloadKeys("w1").control, "x"),
        ("SET", WorkloadKeys("w1").prefix + "done", "x"),
        ("GET", WorkloadKeys("w1").lock),
        ("HSET", TOMBSTONES, "x", "y"),
        ("HGETALL", PRIORITIES),
        ("HSET", REFUSED, "w1", "forged"),  # reads (and with --again clears) a refusal, forges none
        ("HGETALL", REFUSED),
        ("LPOP", SUBMISSIONS),
        ("DEL", SUBMISSIONS),
        ("RPUSH", "rq:queue:rqp", "x"),
        ("HSET", WorkloadKeys("w1").meta, "state", "done"),
        ("ZRANGE", WORKLOADS, "0", "-1"),
        ("HGETALL", OUTBOX),
        ("INFO",),
        ("SUBSCRIBE", "rq:pubsub:x"),
        ("SUBSCRIBE", SUBMITTED_CHANNEL),  # announces submissions, hears none
        ("PUBLISH", "rq:pubsub:x", "stop"),  # no channel but the announcement's
    ):
        assert "no permissions" in refused(s, *command), command
    assert srv.client().lrange(SUBMISSIONS, 0, -1) == [b"w1"]
    srv.client().acl_log_reset()  # the refusals above are logged; what follows must add none

    # the real commands: pack --submit and submit work with the submitter's user; status does not
    cluster = Cluster(tmp_path / "c", srv.role_url("submitter"), kek[0], extra_env=srv.env("submitter"))
    try:
        data = cluster.write_data("d.jsonl", [{"n": 1}])
        script = cluster.write_script("s.py", SCRIPT)
        cluster.rqp("pack", str(data), str(script), "--id", "w2", "--submit")
        cluster.rqp("pack", str(data), str(script), "--id", "w3")
        cluster.rqp("submit", "w3", "--priority", "high")
        assert srv.client().lrange(SUBMISSIONS, 0, -1) == [b"w1", b"w2", b"w3"]
        # --priority is a signed request in the audit chain, and the priority is set
        admin = srv.client()
        assert admin.hget(PRIORITIES, "w3") == b"high" and admin.llen(WorkloadKeys("w3").control) == 1
        assert admin.llen(AUDIT) == 1 and admin.get(AUDIT_HEAD) is not None
        assert admin.acl_log() == [], admin.acl_log()
        cp = cluster.rqp("status", "w2", check=False)
        assert cp.returncode != 0 and b"no permissions to run the 'hgetall' command" in cp.stderr, cp.stderr
    finally:
        cluster.stop()


def test_the_scheduler_hears_announced_submissions_and_the_processor_does_not(srv):
    sub = srv.as_role("scheduler").pubsub(ignore_subscribe_messages=True)
    try:
        sub.subscribe(SUBMITTED_CHANNEL)
        assert srv.as_role("submitter").publish(SUBMITTED_CHANNEL, "") == 1
        deadline = time.monotonic() + 5
        while (message := sub.get_message(timeout=0.1)) is None:
            assert time.monotonic() < deadline, "the scheduler's subscription heard nothing"
        assert message["channel"] == SUBMITTED_CHANNEL.encode()
    finally:
        sub.close()
    p = srv.as_role("processor")
    assert "no permissions" in refused(p, "PUBLISH", SUBMITTED_CHANNEL, "")


def test_the_metrics_logger_only_appends_to_the_metrics_queue(srv, tmp_path):
    m = srv.as_role("metrics-logger")
    assert m.xadd("rqp:mq:rqp-metrics", {"b": b"x"})
    # it keeps its stream within the retention (issue 24 item 19) without reading the messages
    from rqp.storage import RedisMessageQueue
    from rqp.storage.retention import Retention

    RedisMessageQueue(m, retention=Retention(max_entries=2, every_seconds=0, reads=False)).send_many(
        "rqp-metrics", [b"y"] * 4
    )
    assert m.xlen("rqp:mq:rqp-metrics") == 2
    for command in (
        ("XADD", "rqp:mq:rqp-status", "*", "b", "x"),
        ("XRANGE", "rqp:mq:rqp-metrics", "-", "+"),
        ("XDEL", "rqp:mq:rqp-metrics", "0-1"),
        ("RPUSH", SUBMISSIONS, "w"),
        ("GET", "rq:x"),
    ):
        assert "no permissions" in refused(m, *command), command


# ------------------------------------------------------------------------------ the real roles
def _wait_state(cluster: Cluster, wid: str, timeout: float = 120.0) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        cp = cluster.rqp("status", wid, "--json", check=False)
        doc = json.loads(cp.stdout) if cp.returncode in (0, 1) and cp.stdout.strip() else {}
        return doc if doc.get("state") in ("done", "failed") else None

    return wait_until(done, timeout, f"workload {wid} to end", cluster.logs)


def test_every_role_runs_a_workload_with_its_own_user(srv, tmp_path, kek, operator):
    """Serving scheduler, processor (2 workers), submitter, rqp CLI (status, list, events,
    retry), metrics logger and rqp-console (its pages and a retry), each as its own Redis user
    over TLS: the workload runs to its end (one record fails for good after its retries), a
    forged job is rejected and logged, a worker killed is replaced, and Redis refused none of it."""
    admin = srv.client()
    sched_port, proc_port = free_port(), free_port()
    cluster = Cluster(
        tmp_path / "c",
        srv.role_url("scheduler"),
        kek[0],
        extra_env={
            **srv.env("scheduler"), "RQP_MAX_ATTEMPTS": "2", "RQP_CHUNK_SIZE": "16", "RQP_METRICS_PORT": str(sched_port),
            "RQP_TRUSTED_OPERATORS_FILE": str(operator.trusted),
        },
    )  # fmt: skip
    try:
        with open(cluster.root / "scheduler.log", "wb") as log:
            cluster.procs.append(
                subprocess.Popen(
                    [bin_path("rqp-scheduler"), "serve"],
                    env=cluster.env,
                    cwd=cluster.root,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        cluster.start_processor(2, env={**srv.env("processor"), "RQP_METRICS_PORT": str(proc_port)})
        wait_until(lambda: admin.scard(f"rq:workers:{QUEUE}") == 2, 60, "2 workers", cluster.logs)

        records = [{"n": i} for i in range(100)] + [{"n": -1}]
        data = cluster.write_data("d.jsonl", records)
        script = cluster.write_script("s.py", SCRIPT)
        cluster.rqp("pack", str(data), str(script), "--id", "acl-w1", "--submit", env=srv.env("submitter"))
        st = _wait_state(cluster, "acl-w1")
        assert (st["done"], st["failed"], st["total"]) == (100, 1, 101), st
        assert cluster.results("acl-w1") == {i: {"double": 2 * i} for i in range(100)}

        # the CLI on the scheduler VM runs with the scheduler's user
        assert "acl-w1" in cluster.rqp("list").stdout.decode()
        assert json.loads(cluster.rqp("status", "acl-w1", "--record", "100").stdout)["state"] == "failed"
        events = cluster.rqp("events", "--max", "200", "--wait", "1").stdout.decode().splitlines()
        assert {json.loads(e)["id"] for e in events if json.loads(e).get("state") == "done"} == set(range(100))
        assert cluster.rqp("events", "--queue", "events", "--peek").returncode == 0
        assert "re-queued 1 failed records" in cluster.rqp("retry", "acl-w1", "--failed").stdout.decode()
        st = _wait_state(cluster, "acl-w1")
        assert st["failed"] == 1 and st["done"] == 100, st

        # a job nobody's scheduler made: the processor rejects it and logs that with its own user
        forged = push_raw_job(srv.as_role("scheduler"), "acl-forged", job_data("os.system", ["true"]))
        wait_until(lambda: rejection_for(admin, forged), 30, "the forged job's rejection", cluster.logs)

        # a worker that dies is replaced; its supervisor ends its lease (release_worker) first
        victim = cluster.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        wait_until(
            lambda: victim not in cluster.worker_pids() and len(cluster.worker_pids()) == 2,
            30,
            "the killed worker to be replaced",
            cluster.logs,
        )
        wait_until(lambda: admin.scard(f"rq:workers:{QUEUE}") >= 2, 30, "the new worker to register", cluster.logs)

        # Prometheus scrapes of the scheduler and the processor answer from Redis with their users
        for port, want in ((sched_port, 'rqp_workloads{state="done"} 1.0'), (proc_port, "rqp_queue_jobs 0.0")):
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
            assert "rqp_redis_up 1.0" in text and want in text, text

        # the metrics logger, one cycle, with its user: a summary lands on the metrics queue
        cp = cluster.run(
            bin_path("rqp-metrics-logger"), "--once", env={**srv.env("metrics-logger"), "RQP_METRICS_HOST_NAME": "t"}
        )
        assert admin.xlen("rqp:mq:rqp-metrics") == 1, cp.stderr.decode()

        # rqp-console: every page as the read-only user, an action as console-actions
        console = ConsoleServer(
            tmp_path / "console",
            srv.role_url("console"),
            {
                **srv.env("console"),
                "RQP_CONSOLE_ACTIONS_REDIS_URL": srv.role_url("console-actions"),
                "RQP_CONSOLE_ACTIONS_PASSWORD_FILE": str(srv.password_file("console-actions")),
                "RQP_BLOB_URL": cluster.env["RQP_BLOB_URL"],
                # the console signs its actions with its operator key; a retry reads the sealed summary
                "RQP_CONSOLE_OPERATOR_KEY_FILE": str(operator.path),
                "RQP_TRUSTED_OPERATORS_FILE": str(operator.trusted),
                "RQP_KEK_FILE": str(kek[0]),
                "RQP_TRUSTED_SIGNERS_FILE": str(cluster.trusted_signers),
            },
        ).start()
        try:
            c = ConsoleClient(console.url)
            assert c.login().status == 302
            rows = {w["id"]: w for w in c.get("/api/workloads").json()["workloads"]}
            assert (rows["acl-w1"]["done"], rows["acl-w1"]["failed"]) == (100, 1), rows
            for path in ("/api/workloads/acl-w1", "/api/workloads/acl-w1/failures", "/api/audit"):
                assert c.get(path).status == 200, path
            fleet = c.get("/api/fleet").json()
            assert fleet["workers"] >= 2 and fleet["processors"] >= 1, fleet
            assert [v["vm"] for v in c.get("/api/vms?window=15m").json()["vms"]] == ["t"]
            retry = c.post_json("/api/workloads/acl-w1/actions/retry", {"confirm": "acl-w1"})
            assert retry.status == 200 and retry.json()["requeued"] == 1, retry.text
            st = _wait_state(cluster, "acl-w1")
            assert st["failed"] == 1 and st["done"] == 100, st
        finally:
            console.stop()

        # not one command of any role was refused (the log also records refused logins)
        assert admin.acl_log() == [], admin.acl_log()
        assert cluster.procs[0].poll() is None and all(p.poll() is None for p in cluster.processors)

        # while the console's read user is refused a write
        assert "no permissions" in refused(srv.as_role("console"), "DEL", f"rq:job:{forged}")
        assert admin.exists(f"rq:job:{forged}")
    finally:
        cluster.stop()
