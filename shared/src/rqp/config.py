"""One settings object for every role, validated once at start.

Sources, later wins: defaults (the named constants below) < a TOML file (``RQP_CONFIG`` or
``--config``) < environment variables ``RQP_<FIELD>`` < explicit overrides (CLI flags).
Secrets are never settings values: a setting may only *name a file* holding a secret
(``RQP_KEK_FILE``, ``RQP_REDIS_PASSWORD_FILE``), which Compose mounts read-only.

The roles with settings of their own (the console, the metrics logger) load them with
``settings_from_env``, the same conversion under their own variable names.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import sys
import tomllib
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigError
from .redis_auth import DEFAULT_REDIS_AUTH, DEFAULT_REDIS_ENTRA_SCOPE, check_redis_auth
from .sentinel import SENTINEL_SCHEMES, SentinelTarget, parse_sentinel_url, parse_sentinels

__all__ = [
    "DEFAULT_BLOB_URL",
    "DEFAULT_CHECKPOINT_SECONDS",
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_DRAIN_MARGIN_SECONDS",
    "DEFAULT_LEADER_LEASE_SECONDS",
    "DEFAULT_LEASE_SECONDS",
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_MAX_RESULT_BYTES",
    "DEFAULT_RECORD_TIMEOUT",
    "DEFAULT_REDIS_URL",
    "DEFAULT_REMOTE_CHUNK_SIZE",
    "VALUE_KINDS",
    "Settings",
    "convert_setting",
    "default_blob_url",
    "remote_blob_url",
    "settings_from_env",
]

T = TypeVar("T")

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def default_blob_url(env: Mapping[str, str] | None = None) -> str:
    """The local blob store when ``RQP_BLOB_URL`` is not set: an absolute directory of this user's,
    ``$XDG_DATA_HOME/rqp/blobs`` (``~/.local/share/rqp/blobs``), never one relative to the
    current directory -- a role started elsewhere must not silently open an empty store."""
    env = os.environ if env is None else env
    data_home = env.get("XDG_DATA_HOME", "")
    if not os.path.isabs(data_home):  # the XDG spec: a relative value is ignored
        home = env.get("HOME") or os.path.expanduser("~")
        data_home = os.path.join(home, ".local", "share") if os.path.isabs(home) else "/var/lib"
    return "file://" + os.path.join(data_home, "rqp", "blobs")


DEFAULT_BLOB_URL = default_blob_url()


def remote_blob_url(url: str) -> bool:
    """``url`` names a blob store in another service (each request a network round trip)."""
    return urllib.parse.urlsplit(url).scheme in REMOTE_BLOB_SCHEMES


DEFAULT_QUEUE_URL = "redis"  # the same Redis as RQ
DEFAULT_RQ_QUEUE = "rqp"
DEFAULT_STATUS_QUEUE = "rqp-status"
DEFAULT_EVENTS_QUEUE = "rqp-events"
DEFAULT_CHUNK_SIZE = 256
#: the starting chunk size when the blob store is Azure Blob Storage (``REMOTE_BLOB_SCHEMES``) and
#: ``chunk_size`` is not set: there each chunk costs two requests to another service besides its
#: records (its part's Put Blob, its status message; ~1.3 ms of client CPU each, as much again
#: for the service, plus the network's round trip), which chunks of 256 records -- the whole
#: first window of a workload before a chunk's work was measured -- paid ~10 µs per record of
#: on Azurite. Adapted toward ``chunk_target_seconds`` from the first measurement on, as any.
DEFAULT_REMOTE_CHUNK_SIZE = 1024
#: blob URLs whose store is another service (``rqp.azure.blob``'s schemes)
REMOTE_BLOB_SCHEMES = ("azure-blob", "azblob")
DEFAULT_CHUNK_MIN = 16
DEFAULT_CHUNK_MAX = 4096
#: seconds of work a chunk is sized to hold. A chunk costs its worker ~13-18 ms of CPU besides its
#: records (RQ's job bookkeeping, START, the part upload, COMMIT; ~150 Redis commands in all), so at
#: 0.25 s a 1 ms script paid ~60 µs per record of it; at 1 s ~15. The tail policy shrinks the last
#: chunks (``rqp_scheduler.run.enqueue.chunk_size_for``); a lost worker re-runs up to one chunk.
DEFAULT_CHUNK_TARGET_SECONDS = 1.0
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_RETRY_BACKOFF = 1.0
DEFAULT_RETRY_BACKOFF_MAX = 60.0
DEFAULT_LEASE_SECONDS = 30.0
#: seconds before an eviction's NotBefore by which a draining processor has handed back what it
#: cannot finish (``rqp_processor.evictions``)
DEFAULT_DRAIN_MARGIN_SECONDS = 5.0
#: a standby scheduler takes over within this plus its poll (a second) of the leader's death
DEFAULT_LEADER_LEASE_SECONDS = 6.0
DEFAULT_STATUS_TTL_DAYS = 7
DEFAULT_STORAGE_RETRY_SECONDS = 300.0
#: how often the scheduler brings a running workload's checkpoint in the blob store up to date
DEFAULT_CHECKPOINT_SECONDS = 10.0
#: messages a stream keeps: a status message stands for a chunk's records (~580 B in Redis;
#: 2-21 KB with the records' own ids), so about 1.2-42 MB of status stream at the bound
DEFAULT_QUEUE_MAX_ENTRIES = 2_000
#: hours a message is kept (the status records' own TTL, RQP_STATUS_TTL_DAYS, is 7 days)
DEFAULT_QUEUE_MAX_AGE_HOURS = 168.0
#: keep what a consumer group with a consumer has not read, past the bound (with a warning)
DEFAULT_QUEUE_KEEP_UNREAD = True
DEFAULT_RECORD_TIMEOUT = 300.0
DEFAULT_SCRIPT_MEMORY_MB = 4096
DEFAULT_SCRIPT_CPU_SECONDS = 3600
#: the uid[:gid] script processes run as where the role holds CAP_SETUID/CAP_SETGID ("nobody")
DEFAULT_SANDBOX_UID = "65534"
#: one record (a JSON Lines line, a CSV row): a longer one fails alone, and no reader holds more
DEFAULT_MAX_RECORD_BYTES = 16 << 20
#: arrays/objects nested deeper fail the record (rqp.jsonsafe.MAX_JSON_DEPTH; json itself recurses)
DEFAULT_MAX_JSON_DEPTH = 512
#: one CSV field (characters): Python's own csv default, now named; a longer field fails its row
DEFAULT_MAX_CSV_FIELD_BYTES = 131_072
#: the largest result one record may return (its JSON text): a worker holds a few of these at most
DEFAULT_MAX_RESULT_BYTES = 16 << 20
#: the smallest RQP_MAX_RESULT_BYTES accepted (error messages and small results must fit)
MIN_MAX_RESULT_BYTES = 4096


def _check_sandbox_uid(value: str) -> None:
    """``RQP_SANDBOX_UID`` is ``UID``, ``UID:GID`` or ``off``, and never root (the script host's
    own parser, ``rqp.sandbox._identity.parse_uid``, reads it the same way; checked here so a
    wrong value stops the role at start, without the settings importing the sandbox)."""
    v = value.strip()
    if v.lower() in ("off", "false", "no", "none"):
        return
    uid, _, gid = v.partition(":")
    if not uid.isdigit() or (gid and not gid.isdigit()):
        raise ConfigError(f"RQP_SANDBOX_UID={value!r} is not UID, UID:GID or off; e.g. RQP_SANDBOX_UID=65534")
    if int(uid) == 0 or (gid and int(gid) == 0):
        raise ConfigError(f"RQP_SANDBOX_UID={value!r}: the script host's uid and gid must not be root (0)")


def _path_or_none(value: Any) -> Path | None:
    return None if value in (None, "") else Path(value).expanduser()


@dataclass(frozen=True)
class Settings:
    #: Redis holding RQ's queue, status records and leases (``redis://`` or ``rediss://``)
    redis_url: str = DEFAULT_REDIS_URL
    #: file holding the Redis password (overrides any password in the URL)
    redis_password_file: Path | None = None
    #: CA bundle to verify a ``rediss://`` server
    redis_ca_file: Path | None = None
    #: refuse to start against a Redis with no password unless this is true
    allow_insecure_redis: bool = False
    #: Sentinels to ask for the primary (``HOST:PORT,HOST:PORT``; ``rqp.sentinel``), with ``redis_service``
    redis_sentinels: str = ""
    #: Sentinel's name of the Redis primary (its ``sentinel monitor`` name)
    redis_service: str = ""
    #: the ACL user the Sentinels are asked as (their own, not the data connection's)
    redis_sentinel_username: str | None = None
    #: file holding that Sentinel user's password
    redis_sentinel_password_file: Path | None = None
    #: how to log in to Redis: ``password`` (the file above) or ``entra`` (Microsoft Entra ID
    #: tokens for Azure Cache for Redis / Azure Managed Redis; ``rqp.redis_auth``)
    redis_auth: str = DEFAULT_REDIS_AUTH
    #: with ``entra``: the client id of the user-assigned managed identity to log in as
    #: (unset: ``DefaultAzureCredential``, e.g. a system-assigned identity or ``az login``)
    redis_entra_client_id: str | None = None
    #: with ``entra``: the scope tokens are requested for
    redis_entra_scope: str = DEFAULT_REDIS_ENTRA_SCOPE
    #: where workloads and results live: ``file:///dir`` or ``azure-blob://...``
    blob_url: str = DEFAULT_BLOB_URL
    #: where status records and events go: ``redis`` (the Redis above) or ``azure-queue://...``
    queue_url: str = DEFAULT_QUEUE_URL
    #: private KEK (PEM) for the roles that unwrap data keys
    kek_file: Path | None = None
    #: public KEK (PEM), enough to pack
    kek_public_file: Path | None = None
    #: Azure Key Vault key id (``https://vault.vault.azure.net/keys/name/version``), instead of PEM files
    key_vault_key_id: str | None = None
    #: public keys (PEM) of the submitters whose workloads this role accepts
    trusted_signers_file: Path | None = None
    #: the submitter's Ed25519 private key (PEM) that ``rqp pack`` signs with
    signing_key_file: Path | None = None
    #: or an Azure Key Vault EC P-256 key id to sign with
    signing_key_vault_id: str | None = None
    #: signers no role trusts any more (their .pub.pem files, or ``revoked: sha256:...`` lines),
    #: checked before the trusted-signers file
    revoked_signers_file: Path | None = None
    #: public keys (PEM) of the operators whose signed requests (pause, cancel, ...) count
    trusted_operators_file: Path | None = None
    #: the operator's Ed25519 private key (PEM) that control commands and the console sign with
    #: (without one, the CLI signs with the submitter key: it may control only its own workloads)
    operator_key_file: Path | None = None
    #: or an Azure Key Vault EC P-256 key id to sign requests with
    operator_key_vault_id: str | None = None
    #: the scheduler's own Ed25519 key (PEM) that signs each workload's results root
    #: (``rqp verify``); without it the scheduler signs with its operator key, if it has one
    results_key_file: Path | None = None
    #: or an Azure Key Vault EC P-256 key id the results root is signed with (ES256, the vault's
    #: ``sign``; the private key never leaves the vault): ``rqp.results_signer``
    results_key_vault_id: str | None = None
    #: public keys (PEM) of the results keys ``rqp verify`` trusts (without it: the trusted operators)
    trusted_results_keys_file: Path | None = None
    #: run the workload's script in a confined process of its own (false: inside the role)
    sandbox: bool = True
    #: refuse to start unless every sandbox protection is active on this host
    require_sandbox: bool = False
    #: a record whose process() runs longer than this fails alone and its script process is replaced
    record_timeout: float = DEFAULT_RECORD_TIMEOUT
    #: address space of a script process (MiB)
    script_memory_mb: int = DEFAULT_SCRIPT_MEMORY_MB
    #: CPU seconds a script process may use before it is replaced
    script_cpu_seconds: int = DEFAULT_SCRIPT_CPU_SECONDS
    #: the largest result (JSON text, bytes) one record may return; a larger one fails that record
    #: alone, for good, so no script can make a worker buffer more than a few of them
    max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES
    #: extra read-only paths for scripts (colon-separated: reference data, models)
    sandbox_read_paths: str = ""
    #: the uid (``UID`` or ``UID:GID``) script processes run as, owning none of the role's files,
    #: where the role holds CAP_SETUID/CAP_SETGID (the images give it those two); ``off`` keeps
    #: the role's uid. Where it cannot switch, the protections line at start says why.
    sandbox_uid: str = DEFAULT_SANDBOX_UID
    #: exception types (names, comma-separated: ``KeyError,mylib.BadInput``) that fail a record
    #: at once instead of retrying it; a script can also raise ``rqp.PermanentError``
    permanent_errors: str = ""
    #: a record (JSON Lines line, CSV row) longer than this fails alone, naming its line
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
    #: a record nesting arrays/objects deeper than this fails alone
    max_json_depth: int = DEFAULT_MAX_JSON_DEPTH
    #: a CSV field longer than this (characters) fails its row alone
    max_csv_field_bytes: int = DEFAULT_MAX_CSV_FIELD_BYTES
    rq_queue: str = DEFAULT_RQ_QUEUE
    status_queue: str = DEFAULT_STATUS_QUEUE
    events_queue: str = DEFAULT_EVENTS_QUEUE
    #: messages each Redis stream of a queue (status, events, metrics) keeps (0: no length bound)
    queue_max_entries: int = DEFAULT_QUEUE_MAX_ENTRIES
    #: hours a message is kept in those streams (0: no age bound)
    queue_max_age_hours: float = DEFAULT_QUEUE_MAX_AGE_HOURS
    #: keep what a consumer group that has a consumer has not read, past the bounds (warning)
    queue_keep_unread: bool = DEFAULT_QUEUE_KEEP_UNREAD
    #: records per RQ job at start; adapted toward ``chunk_target_seconds`` when adaptive
    chunk_size: int = DEFAULT_CHUNK_SIZE
    adaptive_chunks: bool = True
    chunk_min: int = DEFAULT_CHUNK_MIN
    chunk_max: int = DEFAULT_CHUNK_MAX
    chunk_target_seconds: float = DEFAULT_CHUNK_TARGET_SECONDS
    #: chunks queued ahead of the processors per workload (0: four per live worker, at least 16)
    window_chunks: int = 0
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    retry_backoff: float = DEFAULT_RETRY_BACKOFF
    retry_backoff_max: float = DEFAULT_RETRY_BACKOFF_MAX
    #: a chunk whose worker stops renewing its lease this long is re-run
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    #: a serving scheduler's leader lease (``rqp_scheduler.leader``): a standby takes over this long
    #: (plus one poll) after the leader stops renewing it
    leader_lease_seconds: float = DEFAULT_LEADER_LEASE_SECONDS
    #: worker processes per processor (0: CPU count)
    workers: int = 0
    status_ttl_days: int = DEFAULT_STATUS_TTL_DAYS
    #: how long roles retry an unavailable blob store before giving up (the workload stalls meanwhile)
    storage_retry_seconds: float = DEFAULT_STORAGE_RETRY_SECONDS
    #: seconds between checkpoints of a running workload's progress in the blob store, which a
    #: workload resumes from when Redis is lost entirely (0: none written)
    checkpoint_seconds: float = DEFAULT_CHECKPOINT_SECONDS
    #: keep per-chunk result parts after consolidation (debugging)
    keep_parts: bool = False
    #: port of the role's Prometheus ``/metrics`` endpoint (0: not served)
    metrics_port: int = 0
    #: address that endpoint listens on (``0.0.0.0`` inside a container, reachable on its network)
    metrics_bind: str = "127.0.0.1"
    #: Azure Scheduled Events URL a processor watches for its VM's eviction ("": off, the
    #: default -- never the link-local metadata address unless a deployment sets it)
    scheduled_events_url: str = ""
    #: this VM's name in the events' ``Resources`` ("": the host name)
    vm_name: str = ""
    #: also drain on ``Terminate`` (scale-set scale-in), not only on ``Preempt`` (Spot eviction)
    drain_on_terminate: bool = False
    #: seconds before NotBefore by which a draining processor has handed back what it cannot finish
    drain_margin_seconds: float = DEFAULT_DRAIN_MARGIN_SECONDS
    #: "spot" or "regular" ("": read from the metadata's compute.priority when the URL is set)
    vm_priority: str = ""
    #: the source this came from, for error messages
    origin: str = field(default="defaults", compare=False)
    #: where each setting that is not a default came from: "file", "env" or "flag"
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._validate()

    # ---------------------------------------------------------------- construction
    @classmethod
    def load(
        cls, config_file: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None, **overrides: Any
    ) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, Any] = {"blob_url": default_blob_url(env)}
        sources: dict[str, str] = {}
        origin = ["defaults"]
        config_file = config_file or env.get("RQP_CONFIG")
        names = _setting_names(cls)
        _warn_unknown_variables(env, names)
        if config_file:
            from_file = cls._from_file(Path(config_file))
            values.update(from_file)
            sources.update(dict.fromkeys(from_file, "file"))
            origin.append(str(config_file))
        for name in names:
            key = "RQP_" + name.upper()
            if key in env and env[key] != "":
                values[name] = env[key]
                sources[name] = "env"
                origin.append(key)
        flags = {k: v for k, v in overrides.items() if v is not None}
        values.update(flags)
        sources.update(dict.fromkeys(flags, "flag"))
        return cls.from_mapping(values, origin=", ".join(dict.fromkeys(origin)), sources=sources)

    @classmethod
    def from_url(cls, redis_url: str, **overrides: Any) -> Settings:
        """arq-style: settings from a Redis DSN plus keyword overrides."""
        return cls.from_mapping({"redis_url": redis_url, **overrides}, origin="from_url")

    @classmethod
    def _from_file(cls, path: Path) -> dict[str, Any]:
        try:
            doc = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist; fix RQP_CONFIG or --config") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        doc = doc.get("rqp", doc)
        known = _setting_names(cls)
        unknown = sorted(set(doc) - known)
        if unknown:
            raise ConfigError(
                f"config file {path} has unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return dict(doc)

    @classmethod
    def from_mapping(
        cls, values: Mapping[str, Any], origin: str = "mapping", sources: Mapping[str, str] | None = None
    ) -> Settings:
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in values or f.name in ("origin", "sources"):
                continue
            kwargs[f.name] = convert_setting(f"RQP_{f.name.upper()}", _type_name(f), values[f.name])
        if "chunk_size" not in kwargs and remote_blob_url(str(kwargs.get("blob_url", DEFAULT_BLOB_URL))):
            # still "default" to ``source``; within the bounds set, as any chunk
            low, high = kwargs.get("chunk_min", DEFAULT_CHUNK_MIN), kwargs.get("chunk_max", DEFAULT_CHUNK_MAX)
            kwargs["chunk_size"] = max(low, min(high, DEFAULT_REMOTE_CHUNK_SIZE))
        return cls(**kwargs, origin=origin, sources=dict(sources or {}))

    def source(self, name: str) -> str:
        """Where setting ``name`` came from: "flag" (a command-line option), "env", "file" or
        "default" -- so that, between two settings that say the same thing differently (a private
        and a public KEK), the more explicit one wins."""
        return self.sources.get(name, "default")

    def rank(self, name: str) -> int:
        """``source(name)`` as a precedence: default 0 < file 1 < env 2 < flag 3."""
        return _RANK[self.source(name)]

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    # ---------------------------------------------------------------- validation
    def _validate(self) -> None:
        _check_redis_url(self.redis_url)
        scheme = urllib.parse.urlsplit(self.redis_url).scheme
        if scheme not in ("redis", "rediss", "unix", *SENTINEL_SCHEMES):
            raise ConfigError(
                f"RQP_REDIS_URL must start with redis://, rediss://, unix:// or redis+sentinel://, "
                f"got {_masked(self.redis_url)!r}"
            )
        self._check_sentinel_settings(scheme)
        if scheme not in SENTINEL_SCHEMES and urllib.parse.urlsplit(self.redis_url).password:
            # a secret in a URL lands in environments, process lists and logs; it belongs in a mounted file
            raise ConfigError(
                f"RQP_REDIS_URL {self.redis_url_safe} carries a password; put the password in a file and "
                "name it in RQP_REDIS_PASSWORD_FILE"
            )
        check_redis_auth(
            self.redis_auth,
            client_id=self.redis_entra_client_id,
            scope=self.redis_entra_scope,
            redis_url=self.redis_url,
            password_file=self.redis_password_file,
            allow_insecure=self.allow_insecure_redis,
        )
        for name in ("chunk_size", "chunk_min", "chunk_max", "max_attempts", "max_record_bytes", "max_json_depth",
                     "max_csv_field_bytes"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ConfigError(f"RQP_{name.upper()} must be at least 1, got {getattr(self, name)}")
        if self.chunk_min > self.chunk_max:
            raise ConfigError(f"RQP_CHUNK_MIN ({self.chunk_min}) is larger than RQP_CHUNK_MAX ({self.chunk_max})")
        for name in ("lease_seconds", "chunk_target_seconds", "record_timeout"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"RQP_{name.upper()} must be positive, got {getattr(self, name)}")
        if not self.checkpoint_seconds >= 0:
            raise ConfigError(f"RQP_CHECKPOINT_SECONDS must be 0 (off) or more seconds, got {self.checkpoint_seconds}")
        if self.retry_backoff < 0 or self.retry_backoff_max < 0 or self.workers < 0 or self.window_chunks < 0:
            raise ConfigError(
                "RQP_RETRY_BACKOFF, RQP_RETRY_BACKOFF_MAX, RQP_WORKERS and RQP_WINDOW_CHUNKS must not be negative"
            )
        if self.queue_max_entries < 0 or self.queue_max_age_hours < 0:
            raise ConfigError(
                "RQP_QUEUE_MAX_ENTRIES and RQP_QUEUE_MAX_AGE_HOURS must not be negative (0 turns that bound off)"
            )
        if self.script_memory_mb < 64 or self.script_cpu_seconds < 1:
            raise ConfigError("RQP_SCRIPT_MEMORY_MB must be at least 64 and RQP_SCRIPT_CPU_SECONDS at least 1")
        if self.max_result_bytes < MIN_MAX_RESULT_BYTES:
            raise ConfigError(
                f"RQP_MAX_RESULT_BYTES must be at least {MIN_MAX_RESULT_BYTES}, got {self.max_result_bytes}"
            )
        if not 0 <= self.metrics_port < 65536:
            raise ConfigError(f"RQP_METRICS_PORT must be between 0 (off) and 65535, got {self.metrics_port}")
        # Azure's own spelling is "Spot" / "Regular" (the scale set's priority): any case is taken
        object.__setattr__(self, "vm_priority", self.vm_priority.strip().lower())
        if self.vm_priority not in ("", "spot", "regular"):
            raise ConfigError(f"RQP_VM_PRIORITY must be spot or regular (or unset), got {self.vm_priority!r}")
        if self.drain_margin_seconds < 0:
            raise ConfigError(f"RQP_DRAIN_MARGIN_SECONDS must not be negative, got {self.drain_margin_seconds}")
        if self.scheduled_events_url and urllib.parse.urlsplit(self.scheduled_events_url).scheme not in (
            "http",
            "https",
        ):
            raise ConfigError(
                f"RQP_SCHEDULED_EVENTS_URL must be an http URL, got {self.scheduled_events_url!r}; unset it to turn "
                "the eviction watcher off"
            )
        if not self.metrics_bind.strip():
            raise ConfigError("RQP_METRICS_BIND must be an address to listen on, e.g. 127.0.0.1 or 0.0.0.0")
        if self.require_sandbox and not self.sandbox:
            raise ConfigError("RQP_SANDBOX=false contradicts RQP_REQUIRE_SANDBOX=true; drop one of them")
        _check_sandbox_uid(self.sandbox_uid)
        for name in ("rq_queue", "status_queue", "events_queue"):
            v = getattr(self, name)
            if not v or not all(c.isalnum() or c in "-_" for c in v):
                raise ConfigError(f"RQP_{name.upper()} must be letters, digits, '-' or '_', got {v!r}")

    def _check_sentinel_settings(self, scheme: str) -> None:
        """The two ways of naming a Sentinel-managed primary are not mixed, and neither is half given."""
        if self.leader_lease_seconds <= 0:
            raise ConfigError(f"RQP_LEADER_LEASE_SECONDS must be positive, got {self.leader_lease_seconds}")
        if self.redis_sentinels.strip():
            if scheme in SENTINEL_SCHEMES:
                raise ConfigError(
                    "RQP_REDIS_SENTINELS is set and RQP_REDIS_URL is a redis+sentinel:// URL too; name the Sentinels once"
                )
            if scheme == "unix":
                raise ConfigError("RQP_REDIS_SENTINELS needs RQP_REDIS_URL=redis://... or rediss://..., not unix://")
            if not self.redis_service.strip():
                raise ConfigError(
                    "RQP_REDIS_SENTINELS is set but RQP_REDIS_SERVICE is not; set it to Sentinel's master name"
                )
            parse_sentinels(self.redis_sentinels)
        elif self.redis_service.strip() and scheme not in SENTINEL_SCHEMES:
            raise ConfigError(
                "RQP_REDIS_SERVICE is set but RQP_REDIS_SENTINELS is not; list the Sentinels as HOST:PORT,..."
            )

    @property
    def redis_sentinel(self) -> SentinelTarget | None:
        """The Sentinel-managed primary to use, or None for one server named by ``redis_url``."""
        parts = urllib.parse.urlsplit(self.redis_url)
        if parts.scheme in SENTINEL_SCHEMES:
            return parse_sentinel_url(self.redis_url)
        if not self.redis_sentinels.strip():
            return None
        db = parts.path.strip("/")
        return SentinelTarget(
            sentinels=parse_sentinels(self.redis_sentinels),
            service=self.redis_service.strip(),
            db=int(db) if db.isdigit() else 0,
            tls=parts.scheme == "rediss",
            username=parts.username or None,
        )

    @property
    def redis_tls(self) -> bool:
        """Whether the Redis links use TLS (``rediss://``, ``rediss+sentinel://``)."""
        return urllib.parse.urlsplit(self.redis_url).scheme in ("rediss", "rediss+sentinel")

    @property
    def redis_url_safe(self) -> str:
        """The Redis URL with any password masked, for messages (the Sentinel URL when Sentinels
        are named by ``RQP_REDIS_SENTINELS``)."""
        target = self.redis_sentinel
        if target is not None:
            return target.url()
        parts = urllib.parse.urlsplit(self.redis_url)
        if parts.password:
            netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
            parts = parts._replace(netloc=netloc)
        return urllib.parse.urlunsplit(parts)

    @property
    def worker_count(self) -> int:
        return self.workers or os.cpu_count() or 1

    def read_secret(self, path: Path | None, what: str) -> str | None:
        if path is None:
            return None
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"{what} file {path} cannot be read ({exc.strerror}); mount it read-only or fix the path"
            ) from None


_RANK = {"default": 0, "file": 1, "env": 2, "flag": 3}

#: ``RQP_`` variables that are not settings of this object but are read by other parts of rqp
#: (the roles' log level, the Compose files, the console, the metrics logger, `rqp fleet`, tests, benchmarks)
OTHER_VARIABLES = frozenset(
    {"RQP_CONFIG", "RQP_LOG_LEVEL", "RQP_BLOB_DIR", "RQP_SECRETS_DIR", "RQP_IMAGE_PREFIX", "RQP_TAG",
     "RQP_VERSION", "RQP_REPO", "RQP_SCHEDULER_HOST", "RQP_PROCESSOR_GRACE", "RQP_STOP_GRACE_PERIOD",
     "RQP_PROCESSOR_SCALE"}
)  # fmt: skip
OTHER_PREFIXES = ("RQP_CONSOLE_", "RQP_METRICS_", "RQP_AZURE_", "RQP_TEST_", "RQP_BENCH_", "RQP_FLEET_")
_warned: set[str] = set()


def _setting_names(cls: type) -> set[str]:
    return {f.name for f in fields(cls)} - {"origin", "sources"}


def _warn_unknown_variables(env: Mapping[str, str], names: set[str]) -> None:
    """A misspelled ``RQP_`` variable would be ignored without a word: say so, once per name and
    process, naming the closest setting."""
    known = sorted({"RQP_" + n.upper() for n in names})
    for key in sorted(env):
        if (
            not key.startswith("RQP_")
            or key in known
            or key in OTHER_VARIABLES
            or key.startswith(OTHER_PREFIXES)
            or key in _warned
        ):
            continue
        _warned.add(key)
        close = difflib.get_close_matches(key, [*known, "RQP_CONFIG"], n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}?" if close else "the README's configuration table lists the settings"
        prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "rqp"
        print(f"{prog}: warning: {key} is not an rqp setting and is ignored ({hint})", file=sys.stderr)


def _masked(url: str) -> str:
    """``url`` with any password replaced, without parsing it (it may not parse)."""
    return re.sub(r"(//[^/@:]*:)[^/@]*@", r"\1***@", url)


def _check_redis_url(url: str) -> None:
    """One clear line for a Redis URL that would otherwise fail deep inside the client."""
    fix = "use redis://HOST:PORT/DB (e.g. redis://127.0.0.1:6379/0), rediss://... for TLS, or unix:///path/to/socket"
    try:
        parts = urllib.parse.urlsplit(url)
        port = (
            None if parts.scheme in SENTINEL_SCHEMES else parts.port
        )  # a port that is not a number, or out of range, raises here
    except ValueError as exc:
        raise ConfigError(f"RQP_REDIS_URL {_masked(url)!r} is not a valid URL ({exc}); {fix}") from None
    if parts.scheme in SENTINEL_SCHEMES:
        parse_sentinel_url(url)  # a ConfigError naming what is wrong
        return
    if parts.scheme not in ("redis", "rediss"):
        return  # unix:// has a socket path; other schemes are refused by the caller
    if not parts.hostname:
        raise ConfigError(f"RQP_REDIS_URL {_masked(url)!r} names no host; {fix}")
    if port is not None and not 0 < port < 65536:
        raise ConfigError(f"RQP_REDIS_URL {_masked(url)!r}: port {port} is not between 1 and 65535; {fix}")
    db = parts.path.strip("/")
    if db and not db.isdigit():
        raise ConfigError(
            f"RQP_REDIS_URL {_masked(url)!r}: the database {db!r} after the port must be a number (/0, /1, ...); {fix}"
        )


#: how a conversion error names what a setting of each type must be
VALUE_KINDS: Mapping[str, str] = {"int": "an integer", "float": "a number", "bool": "true or false"}


def _type_name(f: dataclasses.Field) -> str:
    """A field's annotation as written (``"int"``, ``"Path | None"``): this module and the roles'
    settings modules use ``from __future__ import annotations``, so it is a string already."""
    return f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))


def convert_setting(variable: str, typ: str, raw: Any, kinds: Mapping[str, str] = VALUE_KINDS) -> Any:
    """``raw`` (text from the environment or a file, or a value given in code) as a setting of
    annotated type ``typ``; a ``ConfigError`` naming ``variable`` when it is not one. ``kinds``
    words what each type must be in that error (``"a " + typ`` for a type it does not list)."""
    try:
        if typ == "bool":
            if isinstance(raw, bool):
                return raw
            s = str(raw).strip().lower()
            if s in ("1", "true", "yes", "on"):
                return True
            if s in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if typ == "int":
            if isinstance(raw, bool):
                raise ValueError
            return int(raw)
        if typ == "float":
            return float(raw)
        if typ.startswith("Path"):
            return _path_or_none(raw)
        if typ.startswith("str | None"):
            return None if raw in (None, "") else str(raw)
        return str(raw)
    except (TypeError, ValueError):
        kind = kinds.get(typ, "a " + typ.split(" ", maxsplit=1)[0])
        raise ConfigError(f"{variable} must be {kind}, got {raw!r}") from None


def settings_from_env(
    cls: type[T],
    env_names: Mapping[str, str],
    *,
    what: str,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    kinds: Mapping[str, str] = VALUE_KINDS,
) -> T:
    """A role's own settings dataclass ``cls`` (the console's, the metrics logger's) from the
    environment, then ``overrides`` (command-line flags; ``None`` is ignored).

    ``env_names`` maps each setting to its environment variable, which conversion errors name;
    an unset or empty variable leaves the default. ``what`` names the settings in the error for
    an override that is not one of them (``unknown console setting 'x'``).
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = {name: env[var] for name, var in env_names.items() if env.get(var, "") != ""}
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    types = {f.name: _type_name(f) for f in fields(cls)}  # type: ignore[arg-type]  # a dataclass
    converted: dict[str, Any] = {}
    for name, raw in values.items():
        if name not in types:
            raise ConfigError(f"unknown {what} setting {name!r}; known: {', '.join(sorted(types))}")
        converted[name] = convert_setting(env_names.get(name, name), types[name], raw, kinds)
    return cls(**converted)
