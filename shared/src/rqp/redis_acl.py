"""Redis between machines: one Redis user per role with the least privilege it works with, and
the TLS material (a private CA and the server's certificate) that protects the link.

Why: the scheduler VM's Redis is reached over the network by every processor VM, by the machines
that submit work and by the web console. With one shared password, whoever holds any role's copy
(a processor VM, a submitter's laptop, the console) could rewrite any workload's state, flush
the database or reconfigure the server. Here each role has its own user and password and may run
only the commands it needs on only the keys it uses:

* ``scheduler``  -- the whole rqp and RQ key space (it drives both, and the ``rqp`` CLI on the
  scheduler VM uses it), no server administration.
* ``processor``  -- RQ's keys and its workers' command channel, the workloads' ledger keys, its
  lease markers and fleet entry, the outbox, the log of rejected jobs and the status queue's
  stream; not the submissions, not the workload list, not the events or metrics queues, no
  server administration. A stolen processor password cannot submit work, read or forge events, or
  touch the server's configuration.
* ``metrics-logger`` -- appends to the metrics queue's stream; nothing else.
* ``submitter`` -- appends a workload id to the submissions list (``rqp submit``,
  ``rqp pack --submit``) and announces it on the ``rqp:submitted`` channel (PUBLISH there only: a
  wake-up for the serving scheduler, which SUBSCRIBEs to it) and posts the signed ``priority`` request of ``--priority``
  (``rqp.oplog.post``: ``post_control.lua`` appends to the workload's request list and the audit
  chain); it reads a workload's ``state``, may set ``rqp:priorities``, and reads (and, with
  ``--again``, removes) the scheduler's refusal of the workload in ``rqp:refused``; nothing else.
* ``console`` -- reads what rqp-console's pages show (``%R~`` on RQ's and rqp's keys, GET only
  the audit chain's head): no writes, no scripts.
* ``console-actions`` -- rqp-console's pause, resume, cancel and retry (``rqp.control``, signed
  requests posted through ``post_control.lua``): the workloads' keys, the audit log and its head,
  the submissions list; nothing of RQ's or the fleet's.

Where a role needs a command on one key only (GET/SET of the audit head, RPUSH of a workload's
request list), a Redis 7 selector -- ``(+cmd ~key)`` -- grants exactly that pair, so the role's
other commands do not reach those keys nor those commands its other keys.
* ``default`` -- off: a client that does not log in as one of the above gets nothing.

No role gets ``@admin`` or ``@dangerous`` commands (CONFIG, ACL, FLUSHALL, KEYS, DEBUG, MONITOR,
SHUTDOWN, CLIENT KILL/LIST, ...), with one measured exception: ``INFO`` for the scheduler and the
processors, which RQ reads to pick the Redis version's dequeue method (BLMOVE through an
intermediate queue; without INFO it falls back to the less safe BLPOP). ``SELECT`` is denied:
rqp uses database 0. Every role may use the ``@connection`` commands (AUTH, HELLO, PING,
CLIENT SETNAME/INFO/SETINFO, which redis-py and RQ send) except the administrative CLIENT
subcommands and CLIENT TRACKING; the category (rather than a list) keeps one ACL file valid
for Redis 7.0 and for 7.2+, which added CLIENT SETINFO.

The key patterns come from ``rqp.ledger``'s constants and the queue names, so this module is the
one home of the ACL: ``rqp redis-acl`` renders it, ``compose/init-secrets.sh`` writes it as
``redis_users.acl``, Redis loads it with ``--aclfile``, and ``tests/security/test_redis_acl.py``
runs the real roles against it. Passwords appear in the file only as SHA-256 hashes
(``#<hex>``), so the ACL file reveals no password.

TLS: ``make_tls`` creates a private CA (EC P-256) and a server certificate for Redis naming the
scheduler VM (name and/or address) plus ``redis``, ``localhost`` and 127.0.0.1 for clients on the
VM itself. Clients verify it with the CA certificate and check the host name (``rqp.connect``).
The CA's private key is needed only to issue another server certificate: keep it off every VM.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from . import ledger
from .config import DEFAULT_EVENTS_QUEUE, DEFAULT_STATUS_QUEUE
from .errors import ConfigError
from .ledger import (
    AUDIT,
    AUDIT_HEAD,
    FLEET,
    OUTBOX,
    OUTBOX_TIMES,
    PRIORITIES,
    REFUSED,
    REJECTED,
    SUBMISSIONS,
    SUBMITTED_CHANNEL,
    WorkloadKeys,
    held_key,
)
from .storage.redis_queue import STREAM_PREFIX
from .vms import vm_key

__all__ = [
    "ACL_FILE",
    "CA_CERT_FILE",
    "CA_KEY_FILE",
    "DEFAULT_METRICS_QUEUE",
    "ROLES",
    "SERVER_CERT_FILE",
    "SERVER_KEY_FILE",
    "Queues",
    "Role",
    "init_redis_secrets",
    "ledger_globals",
    "make_tls",
    "managed_redis_permissions",
    "password_hash",
    "posting_selectors",
    "read_password_hashes",
    "render_acl",
    "role_rules",
    "server_names",
    "write_acl",
]

#: the metrics logger's default queue (``rqp_metrics.settings.DEFAULT_METRICS_QUEUE``; the shared
#: package imports no role package, so the name is repeated here -- pass ``--metrics-queue`` when
#: RQP_METRICS_QUEUE is changed)
DEFAULT_METRICS_QUEUE = "rqp-metrics"

ACL_FILE = "redis_users.acl"
CA_CERT_FILE = "redis_ca.pem"
CA_KEY_FILE = "redis_ca.key"
SERVER_CERT_FILE = "redis_server.pem"
SERVER_KEY_FILE = "redis_server.key"
#: names every Redis server certificate carries: the Compose service name and the VM itself
LOCAL_NAMES = ("redis", "localhost", "127.0.0.1")
CA_DAYS = 3650
SERVER_DAYS = 825

#: every role's base: no command, then the connection commands minus the administrative ones
_BASE = ("-@all", "+@connection", "-@admin", "-@dangerous", "-select", "-client|tracking")
#: MULTI/EXEC and the scripts redis-py loads (EVALSHA; SCRIPT LOAD/EXISTS when a script is not
#: cached yet). Commands a script runs are checked against the caller's ACL too (Redis 7).
_TRANSACTIONS = ("+multi", "+exec", "+discard", "+watch", "+unwatch")
_SCRIPTS = ("+evalsha", "+script|load", "+script|exists")
#: what RQ itself runs (read from rq's sources: its workers, queues, jobs, registries, results)
_RQ_DATA = (
    "+get", "+set", "+del", "+exists", "+expire", "+persist",
    "+hget", "+hset", "+hmget", "+hgetall", "+hdel", "+hincrby", "+hincrbyfloat", "+hexists",
    "+lpush", "+rpush", "+lpop", "+blpop", "+lmove", "+blmove", "+lrem", "+lrange", "+llen", "+lpos",
    "+sadd", "+srem", "+smembers", "+scard",
    "+zadd", "+zrem", "+zrange", "+zrangebyscore", "+zremrangebyscore", "+zremrangebyrank", "+zscore", "+zcard",
    "+xadd", "+xrevrange", "+xrange", "+xlen",
    "+info",
)  # fmt: skip
#: what rqp adds: bitmaps, hash scans and Lua (the ledger), streams (the Redis message queue)
_RQP_DATA = (
    "+setbit", "+getbit", "+bitcount", "+setrange", "+hsetnx", "+hscan", "+zrevrange", "+ltrim", "+xgroup|create",
)  # fmt: skip
#: keeping a stream within its retention (``rqp.storage.retention``): whoever sends to it trims it,
#: below what a reading consumer group has not read (the metrics logger, which may not read its
#: stream's messages, trims without XRANGE: by age and by length where no group is reading)
_STREAM_TRIM = ("+xtrim", "+xinfo|groups", "+xpending", "+xlen")
#: stream consumption: ``rqp events`` (run on the scheduler VM, with the scheduler's user)
_STREAM_READ = ("+xreadgroup", "+xautoclaim", "+xack", "+xdel")
#: what rqp-console's pages read (progress, a workload's page, failures, fleet, audit log)
_CONSOLE_READ = (
    "+hgetall", "+hget", "+hmget", "+hlen", "+hexists", "+hscan", "+getbit",
    "+zcard", "+zcount", "+zrange", "+zrevrange", "+zrangebyscore", "+zscore",
    "+lrange", "+llen", "+smembers", "+xlen",
)  # fmt: skip
#: what rqp-console's actions run on the workloads' keys, the audit log and the submissions:
#: ``rqp.control`` (post_control.lua through EVALSHA, and what it runs, which Redis checks against
#: the caller's ACL too; the retry's state change in MULTI/EXEC)
_CONSOLE_ACTIONS = (
    *_SCRIPTS,
    "+hget", "+hset", "+hdel", "+exists", "+rpush", "+lpush", "+ltrim",
    "+multi", "+exec", "+discard", "+persist", "+lrange",
)  # fmt: skip


def _selector(commands: Iterable[str], keys: Iterable[str]) -> str:
    """A Redis 7 ACL selector: these commands on these keys, and nothing across to the rest."""
    return "(" + " ".join((*commands, *(f"~{k}" for k in keys))) + ")"


def posting_selectors(workload_keys: WorkloadKeys) -> tuple[str, ...]:
    """What posting a signed control request takes (``rqp.oplog.post``): EVALSHA of
    ``post_control.lua`` naming its keys, and, one pair at a time, the commands it runs -- GET/SET
    of the audit chain's head, LPUSH/LTRIM of the chain, RPUSH of the workload's request list,
    HGET of its state and EXISTS of it and of its scheduler's lock."""
    k = workload_keys
    return (
        _selector(_SCRIPTS, (k.meta, k.control, k.lock, AUDIT, AUDIT_HEAD, SUBMISSIONS)),
        _selector(("+get", "+set"), (AUDIT_HEAD,)),
        _selector(("+lpush", "+ltrim"), (AUDIT,)),
        _selector(("+rpush",), (k.control, SUBMISSIONS)),
        _selector(("+hget", "+exists"), (k.meta, k.lock)),
    )


@dataclass(frozen=True)
class Queues:
    """The queues whose streams the roles use (``Settings``' and the metrics logger's defaults)."""

    status: str = DEFAULT_STATUS_QUEUE
    events: str = DEFAULT_EVENTS_QUEUE
    metrics: str = DEFAULT_METRICS_QUEUE

    def __post_init__(self) -> None:
        for name in (self.status, self.events, self.metrics):
            # the names become key patterns: glob characters would widen them
            if not name or not all(c.isalnum() or c in "-_" for c in name):
                raise ConfigError(f"queue name {name!r} must be letters, digits, '-' or '_'")

    def stream(self, queue: str) -> str:
        return STREAM_PREFIX + queue


@dataclass(frozen=True)
class Role:
    """One Redis user: its name, the file its password is in, and why it has what it has."""

    user: str
    #: file name (in the secrets directory, and under /run/secrets in the containers)
    password_file: str
    what: str


ROLES: tuple[Role, ...] = (
    Role("scheduler", "redis_scheduler_password", "the scheduler and the rqp CLI on the scheduler VM"),
    Role("processor", "redis_processor_password", "the processors (RQ workers)"),
    Role("metrics-logger", "redis_metrics_password", "the metrics loggers"),
    Role("submitter", "redis_submitter_password", "rqp submit / rqp pack --submit"),
    Role("console", "redis_console_password", "rqp-console's pages (read-only)"),
    Role("console-actions", "redis_console_actions_password", "rqp-console's pause, resume, cancel and retry"),
)


def ledger_globals() -> tuple[str, ...]:
    """Every shared key ``rqp.ledger`` names (workload list, submissions, outbox, logs): the
    scheduler -- and the ``rqp`` CLI on its VM, which acts for the operator -- may use them all,
    so a key added there is the scheduler's without a change here."""
    names = (getattr(ledger, n) for n in ledger.__all__ if n.isupper() and n != "SUBMITTED_CHANNEL")  # a channel
    return tuple(sorted(v for v in names if isinstance(v, str) and v.startswith("rqp:")))


def role_rules(queues: Queues | None = None) -> dict[str, tuple[str, ...]]:
    """Each role's ACL rules (commands, keys, channels) without its password, by user name."""
    q = queues or Queues()
    any_workload = WorkloadKeys("*")
    workload = any_workload.prefix + "*"  # rqp:w:<W>:<key>, every workload
    rq = "rq:*"
    fleet = f"{FLEET}:*"  # one hash per processor (``rqp.ledger`` fleet registry), FLEET its index
    vms = vm_key("*")  # each processor VM's Spot label (``rqp.vms``)
    scheduler_keys = (
        rq, workload, held_key("*"), fleet, vms, *ledger_globals(), q.stream(q.status), q.stream(q.events),
    )  # fmt: skip
    processor_keys = (
        rq, workload, held_key("*"), FLEET, fleet, vms, OUTBOX, OUTBOX_TIMES, REJECTED, q.stream(q.status),
    )  # fmt: skip
    scheduler = (
        *_BASE, *_TRANSACTIONS, *_SCRIPTS, *_RQ_DATA, *_RQP_DATA, *_STREAM_READ, *_STREAM_TRIM,
        *(f"~{k}" for k in scheduler_keys),
        # a serving scheduler listens for submissions announced (``rqp.ledger.announce_submission``)
        "+subscribe", "+unsubscribe", f"&{SUBMITTED_CHANNEL}",
    )  # fmt: skip
    processor = (
        *_BASE, *_TRANSACTIONS, *_SCRIPTS, *_RQ_DATA, *_RQP_DATA, *_STREAM_TRIM, "+subscribe", "+unsubscribe",
        *(f"~{k}" for k in processor_keys),
        "&rq:pubsub:*",  # RQ workers listen for commands (stop a job, shut down) on their own channel
    )  # fmt: skip
    return {
        "scheduler": scheduler,
        "processor": processor,
        "metrics-logger": (*_BASE, "+xgroup|create", "+xadd", *_STREAM_TRIM, f"~{q.stream(q.metrics)}"),
        # submit, and post the signed priority request of --priority (its priority in rqp:priorities)
        "submitter": (
            *_BASE,
            "+rpush",
            f"~{SUBMISSIONS}",
            # and announces it, so a serving scheduler takes it at once (a wake-up, nothing more)
            "+publish",
            f"&{SUBMITTED_CHANNEL}",
            *posting_selectors(any_workload),
            _selector(("+multi", "+exec", "+discard", "+hset"), (PRIORITIES,)),
            # whether the scheduler refused it before (rqp submit says so; --again clears it)
            _selector(("+hget", "+hdel"), (REFUSED,)),
        ),
        # a stolen console password shows what the console shows and changes nothing
        "console": (*_BASE, *_CONSOLE_READ, f"%R~{rq}", "%R~rqp:*", f"(+get %R~{AUDIT_HEAD})"),
        # the workloads' state, the audit log and the submissions: nothing of RQ's or the fleet's
        "console-actions": (
            *_BASE,
            *_CONSOLE_ACTIONS,
            f"~{workload}",
            f"~{AUDIT}",
            f"~{SUBMISSIONS}",
            *posting_selectors(any_workload),
        ),
    }


def password_hash(password: str) -> str:
    """The SHA-256 hex digest Redis's ``#<hash>`` rule takes (of the password as the role sends it)."""
    return hashlib.sha256(password.strip().encode()).hexdigest()


def render_acl(hashes: Mapping[str, str], queues: Queues | None = None) -> str:
    """The ACL file: ``default`` off, then each role with its password hash(es).

    ``hashes`` maps a user name to the SHA-256 hex of its password (``password_hash``); every
    role must have one, so a missing password file cannot silently leave a role open."""
    rules = role_rules(queues)
    missing = [r.user for r in ROLES if r.user not in hashes]
    if missing:
        raise ConfigError(f"no password hash for Redis user(s) {', '.join(missing)}")
    # (an ACL file has no comments: Redis refuses any line but "user ...")
    lines = ["user default off resetpass resetkeys resetchannels -@all"]
    for role in ROLES:
        digest = hashes[role.user].lower()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ConfigError(f"the password hash of Redis user {role.user} is not a SHA-256 hex digest")
        lines.append(" ".join(("user", role.user, "reset", "resetchannels", "on", f"#{digest}", *rules[role.user])))
    return "\n".join(lines) + "\n"


def read_password_hashes(directory: Path) -> dict[str, str]:
    """Hash each role's password file in ``directory``; ``ConfigError`` naming a missing or empty one."""
    out = {}
    for role in ROLES:
        path = Path(directory) / role.password_file
        try:
            password = path.read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"Redis password file {path} cannot be read ({exc.strerror}); run compose/init-secrets.sh"
            ) from None
        if not password:
            raise ConfigError(f"Redis password file {path} is empty")
        out[role.user] = password_hash(password)
    return out


# ------------------------------------------------------------------------------ TLS
def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _san(hosts: Iterable[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for host in dict.fromkeys(h.strip() for h in hosts if h.strip()):
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            out.append(x509.DNSName(host))
    return out


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with ``mode`` from the start (never widened, never overwritten)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, mode)


def write_acl(path: Path, acl: str) -> None:
    """Write a rendered ACL file as Redis reads it: mode 0400 from the start, never overwritten."""
    _write_new(path, acl.encode(), 0o400)


def _new_ca(now: datetime.datetime) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(f"rqp Redis CA {secrets.token_hex(4)}")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _new_server_cert(
    ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, hosts: Sequence[str], now: datetime.datetime
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=SERVER_DAYS))
        .add_extension(x509.SubjectAlternativeName(_san(hosts)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def server_names(cert_file: Path) -> list[str]:
    """The DNS names and addresses a server certificate is valid for."""
    cert = x509.load_pem_x509_certificate(Path(cert_file).read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [*san.get_values_for_type(x509.DNSName), *(str(a) for a in san.get_values_for_type(x509.IPAddress))]


def make_tls(directory: Path, hosts: Sequence[str]) -> list[str]:
    """The CA and Redis's server certificate in ``directory``, made where missing (never replaced).

    ``hosts``: the names and addresses processors use to reach Redis (the scheduler VM's);
    ``LOCAL_NAMES`` are added. Returns the file names made. The CA key is written 0400 and is
    needed only to issue a server certificate: a missing CA key is an error only then."""
    d = Path(directory)
    made: list[str] = []
    now = datetime.datetime.now(datetime.UTC)
    ca_key_path, ca_cert_path = d / CA_KEY_FILE, d / CA_CERT_FILE
    if not ca_cert_path.exists():
        if ca_key_path.exists():
            raise ConfigError(f"{ca_key_path} exists without {ca_cert_path}; restore the CA certificate or remove both")
        ca_key, ca_cert = _new_ca(now)
        _write_new(ca_key_path, _pem_key(ca_key), 0o400)
        _write_new(ca_cert_path, ca_cert.public_bytes(serialization.Encoding.PEM), 0o444)
        made += [CA_KEY_FILE, CA_CERT_FILE]
    key_path, cert_path = d / SERVER_KEY_FILE, d / SERVER_CERT_FILE
    if key_path.exists() != cert_path.exists():
        raise ConfigError(f"only one of {key_path} and {cert_path} exists; remove it to issue a new pair")
    if not cert_path.exists():
        if not ca_key_path.exists():
            raise ConfigError(
                f"a new Redis server certificate needs the CA key {ca_key_path}; put it back for this run "
                "(it is needed on no VM)"
            )
        ca_key_any = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
        if not isinstance(ca_key_any, ec.EllipticCurvePrivateKey):
            raise ConfigError(f"{ca_key_path} is not the EC key of an rqp Redis CA")
        ca_cert = x509.load_pem_x509_certificate(ca_cert_path.read_bytes())
        names = [*dict.fromkeys(h.strip() for h in [*hosts, *LOCAL_NAMES] if h.strip())]
        key, cert = _new_server_cert(ca_key_any, ca_cert, names, now)
        _write_new(key_path, _pem_key(key), 0o400)
        _write_new(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o444)
        made += [SERVER_KEY_FILE, SERVER_CERT_FILE]
    return made


def init_redis_secrets(
    directory: Path, hosts: Sequence[str], queues: Queues | None = None
) -> tuple[list[str], list[str]]:
    """What Redis between VMs needs, made where missing, nothing overwritten: a password file
    per role (mode 0400), the CA and server certificate (``make_tls``), and the ACL file made
    from the password files. Returns (files made, warnings)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    made: list[str] = []
    warnings: list[str] = []
    for role in ROLES:
        path = d / role.password_file
        if not path.exists():
            _write_new(path, (secrets.token_hex(32) + "\n").encode(), 0o400)
            made.append(role.password_file)
    made += make_tls(d, hosts)
    wanted = [h.strip() for h in hosts if h.strip()]
    have = server_names(d / SERVER_CERT_FILE)
    if not wanted and set(have) <= set(LOCAL_NAMES):
        warnings.append(
            f"{SERVER_CERT_FILE} names only {', '.join(have)}: enough on one machine, but processor VMs "
            "reach Redis by the scheduler VM's name or address; give it with --host (RQP_SCHEDULER_HOST)"
        )
    elif missing := [h for h in wanted if h not in have]:
        warnings.append(
            f"the existing {SERVER_CERT_FILE} does not name {', '.join(missing)} (it names {', '.join(have)}); "
            f"to issue a new one, remove {SERVER_CERT_FILE} and {SERVER_KEY_FILE} and run this again"
        )
    acl = render_acl(read_password_hashes(d), queues)
    acl_path = d / ACL_FILE
    if not acl_path.exists():
        _write_new(acl_path, acl.encode(), 0o400)
        made.append(ACL_FILE)
    else:
        try:
            current = acl_path.read_text()
        except OSError:
            current = None  # owned by Redis's user; the caller may not read it
        if current is not None and current != acl:
            warnings.append(
                f"{ACL_FILE} differs from what the password files give (a password was replaced?): "
                f"remove it and run this again, then restart Redis"
            )
    return made, warnings


#: what no managed policy gets (``managed_redis_permissions``)
_PUBLISH = "+publish"


def managed_redis_permissions(roles: Iterable[str]) -> str:
    """The union of ``roles``' ACL rules as one Azure Cache for Redis custom access policy.

    That service speaks the Redis 6.0 ACL: no selectors (their commands and keys join the main
    rule, so the policy is coarser than the VM's ACL), no read-only key patterns (``%R~`` becomes
    ``~``), no removal of a subcommand, and every Pub/Sub channel allowed (6.0's default). So no
    policy gets PUBLISH: kept to ``rqp:submitted`` on a VM's ACL, here it would reach every
    channel -- RQ's worker commands (``shutdown``, ``kill-horse``) too (the twelfth review, F2).
    The submitter's announcement is a hint: without it a serving scheduler takes the submission
    at its next look (``WAIT_IDLE_SERVING``)."""
    rules = role_rules()
    unknown = [r for r in roles if r not in rules]
    if unknown:
        raise ConfigError(f"unknown Redis role(s) {', '.join(unknown)}; known: {', '.join(rules)}")
    tokens: list[str] = []
    for role in roles:
        for rule in rules[role]:
            tokens.extend(rule.strip("()").split())
    out: list[str] = []
    for raw in tokens:
        token = raw[2:] if raw.startswith("%R~") else raw
        if token.startswith("&") or (token.startswith("-") and "|" in token) or token == _PUBLISH:
            continue
        if token not in out:
            out.append(token)
    base = [t for t in out if t.startswith(("-", "+@connection"))]
    commands = [t for t in out if t.startswith("+") and t not in base]
    keys = [t for t in out if t.startswith("~")]
    return " ".join([*base, *commands, *keys])
