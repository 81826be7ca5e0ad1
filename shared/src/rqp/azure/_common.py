"""What the Azure Storage backends share: URL parsing, credentials, timeouts, one retry policy,
and the translation of SDK exceptions into rqp's error tree.

URL forms (``azure-blob://`` for blobs, ``azure-queue://`` for queues)::

    azure-blob://<account>/<container>
    azure-queue://<account>
        credential: DefaultAzureCredential (managed identity, workload identity, az login, or
        azure-identity's own AZURE_CLIENT_ID / AZURE_TENANT_ID / ... variables);
        endpoint https://<account>.blob.core.windows.net (or .queue.)

    ...?connection_string_file=/run/secrets/storage-conn
        the connection string is read from that file (account key or SAS inside it); its
        endpoints are used unless ``endpoint`` is given too
    ...?sas_file=/run/secrets/storage-sas
        a SAS token read from that file
    ...?endpoint=http://127.0.0.1:10000/devstoreaccount1
        another endpoint: an emulator (Azurite), a sovereign cloud, a private endpoint
    ...?api_version=2025-11-05
        pin the REST API version (Azurite without ``--skipApiVersionCheck`` needs an older one)

Secrets never sit in the URL (it shows up in logs, ``docker inspect`` and error messages): only
*files* holding them are named there, and unknown query options, such as a pasted SAS, are
refused without echoing their values.

Retries: the SDK's own retry policy is switched off (``retry_total=0``) so that there is one
policy, not two multiplied together (the SDK alone retries 10 times). ``RetryPolicy`` retries
transient faults (connection refused or reset, timeouts, HTTP 408/429/500/502/503/504) with
exponential backoff plus jitter under both an attempt budget and a deadline; everything else
(bad credentials, 403, 404, conflicts) fails on the first answer.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from azure.core.credentials import AzureSasCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    IncompleteReadError,
    ServiceRequestError,
    ServiceResponseError,
)
from tenacity import Retrying, retry_if_exception, stop_after_attempt, stop_after_delay, wait_exponential, wait_random

from ..errors import ConfigError, StorageError, StorageUnavailableError

__all__ = [
    "CONNECTION_TIMEOUT",
    "READ_TIMEOUT",
    "RETRY_ATTEMPTS",
    "RETRY_DEADLINE",
    "RETRY_INITIAL_WAIT",
    "RETRY_MAX_WAIT",
    "RetriesExhausted",
    "RetryPolicy",
    "StorageTarget",
    "StorageUrl",
    "build_service_client",
    "client_options",
    "environment_settings",
    "error_code",
    "is_transient",
    "open_service_client",
    "read_secret_file",
    "safe_reason",
    "storage_error",
]

log = logging.getLogger("rqp.azure")

T = TypeVar("T")

#: seconds to open a TCP/TLS connection; a dead endpoint should fail fast and be retried
CONNECTION_TIMEOUT = 5.0
#: seconds without a byte from the server before a call is abandoned (and retried)
READ_TIMEOUT = 30.0
#: attempts per call, the first included
RETRY_ATTEMPTS = 6
#: first backoff in seconds; doubles per attempt, plus a random jitter of up to this much
RETRY_INITIAL_WAIT = 0.5
#: no single backoff longer than this
RETRY_MAX_WAIT = 10.0
#: no new attempt starts after this many seconds since the first
RETRY_DEADLINE = 60.0

#: HTTP statuses that say "try again later" rather than "you are wrong"
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
#: storage error codes that mean the credential itself was refused
AUTH_ERROR_CODES = frozenset({"AuthenticationFailed", "InvalidAuthenticationInfo", "NoAuthenticationInformation"})

DEFAULT_ENDPOINT_SUFFIX = "core.windows.net"
_ACCOUNT_RE = re.compile(r"^[a-z0-9]{3,24}$")
#: container and queue names: 3-63 lowercase letters, digits and single hyphens, not at the ends
_RESOURCE_RE = re.compile(r"^(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*$")
_URL_OPTIONS = ("connection_string_file", "sas_file", "endpoint", "api_version")


# --------------------------------------------------------------------------- errors and retries


def error_code(exc: BaseException) -> str | None:
    """The service's error code (``BlobNotFound``, ``QueueNotFound``...), from the body or the
    ``x-ms-error-code`` header (HEAD requests have no body)."""
    code = getattr(exc, "error_code", None)
    if code:
        return str(getattr(code, "value", code))  # StorageErrorCode is a str Enum
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    return headers.get("x-ms-error-code")


def status_code(exc: BaseException) -> int | None:
    return getattr(exc, "status_code", None) if isinstance(exc, HttpResponseError) else None


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: the request may not have reached a healthy server, or the server said so."""
    if isinstance(exc, IncompleteReadError):
        return True  # connection dropped mid-body
    if isinstance(exc, HttpResponseError):
        return status_code(exc) in TRANSIENT_STATUSES
    return isinstance(exc, (ServiceRequestError, ServiceResponseError))


def safe_reason(exc: BaseException) -> str:
    """A short cause for an error message, built from codes and exception types only.

    Never ``str(exc)``: the SDK and urllib3 put the request URL in their messages, and a URL can
    carry a SAS token.
    """
    if isinstance(exc, RetriesExhausted):
        return safe_reason(exc.last)
    if isinstance(exc, HttpResponseError) and status_code(exc) is not None:
        code = error_code(exc)
        return f"HTTP {status_code(exc)}" + (f" {code}" if code else "")
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop(0)
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, ConnectionRefusedError):
            return "connection refused"
        if isinstance(e, ConnectionResetError):
            return "connection reset"
        if isinstance(e, socket.gaierror):
            return "host name not resolved"
        if isinstance(e, (TimeoutError, socket.timeout)) or "Timeout" in type(e).__name__:
            return "timed out"
        todo.extend([getattr(e, "inner_exception", None), e.__cause__, e.__context__])
        todo.extend(a for a in getattr(e, "args", ()) if isinstance(a, BaseException))
    return type(exc).__name__


class RetriesExhausted(Exception):
    """A transient fault outlasted the retry budget; translated to ``StorageUnavailableError``."""

    def __init__(self, last: BaseException, attempts: int, elapsed: float) -> None:
        super().__init__(f"{safe_reason(last)} after {attempts} attempts in {elapsed:.1f}s")
        self.last = last
        self.attempts = attempts
        self.elapsed = elapsed


@dataclass(frozen=True)
class RetryPolicy:
    """Retry transient faults with exponential backoff and jitter, bounded by attempts and time.

    Jitter spreads the retries of many processors that lost the same endpoint at once, so they do
    not come back in lock step. Tests pass a small policy to keep outages quick.
    """

    attempts: int = RETRY_ATTEMPTS
    initial_wait: float = RETRY_INITIAL_WAIT
    max_wait: float = RETRY_MAX_WAIT
    deadline: float = RETRY_DEADLINE

    def call(self, fn: Callable[[], T], what: str = "request") -> T:
        """``fn()``; permanent errors propagate at once, exhausted transient ones as ``RetriesExhausted``."""
        attempts = 0
        start = time.monotonic()

        def counted() -> T:
            nonlocal attempts
            attempts += 1
            return fn()

        def before_sleep(state: Any) -> None:
            exc = state.outcome.exception()
            sleep = getattr(state.next_action, "sleep", 0.0)
            log.warning(
                "transient failure of %s (%s); retry %d in %.2fs", what, safe_reason(exc), state.attempt_number, sleep
            )

        retrying = Retrying(
            stop=stop_after_attempt(self.attempts) | stop_after_delay(self.deadline),
            # spelled out rather than wait_exponential_jitter, whose arguments changed across tenacity versions
            wait=wait_exponential(multiplier=self.initial_wait, max=self.max_wait) + wait_random(0, self.initial_wait),
            retry=retry_if_exception(is_transient),
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            return retrying(counted)
        except Exception as exc:
            if is_transient(exc):
                raise RetriesExhausted(exc, attempts, time.monotonic() - start) from exc
            raise


DEFAULT_RETRY = RetryPolicy()


# --------------------------------------------------------------------------- URLs and credentials


def read_secret_file(path: str | Path, what: str, option: str) -> str:
    """A secret from a mounted file (Docker/Kubernetes secrets), stripped of surrounding blanks."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ConfigError(f"{option} file {p} does not exist; mount the {what} there or fix the URL") from None
    except (PermissionError, IsADirectoryError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{option} file {p} is not readable as text ({type(exc).__name__}); fix its mode or contents"
        ) from None
    if not text:
        raise ConfigError(f"{option} file {p} is empty; it must hold the {what}")
    return text


def _parse_connection_string(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in text.split(";"):
        if "=" in part:
            key, _, value = part.partition("=")
            out[key.strip().lower()] = value.strip()
    return out


@dataclass(frozen=True)
class StorageUrl:
    """A parsed ``azure-blob://`` or ``azure-queue://`` URL; holds file names, never secrets."""

    scheme: str
    account: str
    resource: str | None
    connection_string_file: str | None = None
    sas_file: str | None = None
    endpoint: str | None = None
    api_version: str | None = None

    @classmethod
    def parse(cls, url: str, *, schemes: tuple[str, ...], service: str, needs_resource: bool) -> StorageUrl:
        """Validate ``url``; errors name the part that is wrong and never echo query values."""
        parts = urllib.parse.urlsplit(url)
        env = "RQP_BLOB_URL" if service == "blob" else "RQP_QUEUE_URL"
        form = f"{schemes[0]}://<account>/<container>" if needs_resource else f"{schemes[0]}://<account>"
        if parts.scheme not in schemes:
            raise ConfigError(f"{env} must look like {form}, not scheme {parts.scheme!r}")
        if "@" in parts.netloc:
            raise ConfigError(
                f"{env} must not hold credentials before '@'; name a connection_string_file or sas_file instead"
            )
        account = parts.hostname or ""
        if not _ACCOUNT_RE.match(account):
            raise ConfigError(
                f"{env} names storage account {account!r}; account names are 3-24 lowercase letters and digits ({form})"
            )
        path = parts.path.strip("/")
        resource: str | None = None
        if needs_resource:
            if not path or "/" in path:
                raise ConfigError(f"{env} must name one container: {form}")
            check_resource_name(path, "container", env)
            resource = path
        elif path:
            raise ConfigError(f"{env} takes no path ({form}); queue names come from the settings")
        try:
            query = urllib.parse.parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
        except ValueError:
            raise ConfigError(
                f"{env} has a malformed query string; use ?connection_string_file=PATH, ?sas_file=PATH or ?endpoint=URL"
            ) from None
        unknown = sorted(set(query) - set(_URL_OPTIONS))
        if unknown:
            raise ConfigError(
                f"{env} has unknown option(s) {', '.join(unknown)}; allowed: {', '.join(_URL_OPTIONS)} "
                f"(secrets go in files named by connection_string_file or sas_file, never in the URL)"
            )
        opts = {k: v[-1] for k, v in query.items()}
        if opts.get("connection_string_file") and opts.get("sas_file"):
            raise ConfigError(f"{env} names both connection_string_file and sas_file; use one")
        endpoint = opts.get("endpoint") or None
        if endpoint:
            ep = urllib.parse.urlsplit(endpoint)
            if ep.scheme not in ("http", "https") or not ep.netloc or ep.query or "@" in ep.netloc:
                raise ConfigError(
                    f"{env} endpoint must be a plain http(s)://host[:port][/path] URL without query or credentials"
                )
        return cls(
            scheme=parts.scheme,
            account=account,
            resource=resource,
            connection_string_file=opts.get("connection_string_file") or None,
            sas_file=opts.get("sas_file") or None,
            endpoint=endpoint.rstrip("/") if endpoint else None,
            api_version=opts.get("api_version") or None,
        )


def check_resource_name(name: str, kind: str, where: str) -> str:
    """Container and queue names follow Azure's rule; say so here rather than as an HTTP 400."""
    if not _RESOURCE_RE.match(name):
        raise ConfigError(
            f"{kind} name {name!r} (from {where}) is invalid: use 3-63 lowercase letters, digits and single hyphens"
        )
    return name


@dataclass
class StorageTarget:
    """What error messages name: the account, its endpoint, and which credential to check."""

    account: str
    endpoint: str
    auth_hint: str
    #: the RBAC role that grants data access, named in "denied" messages when an identity is used
    role: str = ""
    #: credentials this backend created and must close
    owned: list[Any] = field(default_factory=list)

    def location(self, service: str, path: str = "") -> str:
        """How messages name a store: ``azure-<service>://account[/path]``, plus the endpoint
        when it is not Azure's public one (an emulator, a sovereign cloud)."""
        default = f"https://{self.account}.{service}.{DEFAULT_ENDPOINT_SUFFIX}"
        suffix = "" if self.endpoint == default else f" ({self.endpoint})"
        return f"azure-{service}://{self.account}{'/' + path if path else ''}{suffix}"


def client_options(connection_timeout: float, read_timeout: float, api_version: str | None) -> dict[str, Any]:
    """Keyword arguments for every storage client: our timeouts, the SDK's retries off."""
    opts: dict[str, Any] = {"connection_timeout": connection_timeout, "read_timeout": read_timeout, "retry_total": 0}
    if api_version:
        opts["api_version"] = api_version
    return opts


def environment_settings(endpoint: str) -> dict[str, Any]:
    """Client keyword arguments that carry what ``requests`` reads from the environment, read once.

    With its default ``trust_env``, ``requests`` walks every environment variable for proxies,
    checks ``NO_PROXY`` and looks for ``~/.netrc`` on *every* request: a quarter of the client's
    CPU per blob request (~1 ms of ~3.5 ms, measured against Azurite; bench/README.md). The
    session is built with ``use_env_settings=False`` instead and given the same proxies (for this
    endpoint, ``NO_PROXY`` applied) and CA bundle (``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``) once,
    at construction. ``~/.netrc`` is not read: an Azure request carries its own Authorization
    header, which a netrc entry for the host would have replaced.
    """
    import requests.utils  # noqa: PLC0415 - the Azure SDK's transport; only these backends need it

    opts: dict[str, Any] = {"use_env_settings": False}
    proxies = requests.utils.get_environ_proxies(endpoint)
    if proxies:
        opts["proxies"] = dict(proxies)
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        opts["connection_verify"] = bundle
    return opts


def _connection_string_endpoint(fields_: dict[str, str], account: str, service: str) -> str:
    """The endpoint a connection string's client will call (its explicit one, or the default)."""
    explicit = fields_.get(f"{service}endpoint")
    if explicit:
        return explicit
    protocol = fields_.get("defaultendpointsprotocol", "https")
    suffix = fields_.get("endpointsuffix", DEFAULT_ENDPOINT_SUFFIX)
    return f"{protocol}://{account}.{service}.{suffix}"


def build_service_client(
    client_cls: Any,
    url: StorageUrl,
    *,
    service: str,
    role: str,
    connection_timeout: float = CONNECTION_TIMEOUT,
    read_timeout: float = READ_TIMEOUT,
    credential: Any = None,
) -> tuple[Any, StorageTarget]:
    """A ``BlobServiceClient``/``QueueServiceClient`` for ``url`` and the target its errors name.

    ``credential`` overrides the URL's choice (tests, or callers holding their own identity).
    """
    opts = client_options(connection_timeout, read_timeout, url.api_version)
    default_endpoint = f"https://{url.account}.{service}.{DEFAULT_ENDPOINT_SUFFIX}"
    endpoint = url.endpoint or default_endpoint
    env = "RQP_BLOB_URL" if service == "blob" else "RQP_QUEUE_URL"

    if credential is not None:
        client = client_cls(account_url=endpoint, credential=credential, **opts, **environment_settings(endpoint))
        return client, StorageTarget(url.account, endpoint, "the credential passed to rqp", role)  # may be an identity

    if url.connection_string_file:
        text = read_secret_file(url.connection_string_file, "storage connection string", "connection_string_file")
        fields_ = _parse_connection_string(text)
        hint = f"the account key or SAS in the connection string in {url.connection_string_file}"
        dev_storage = fields_.get("usedevelopmentstorage", "").lower() == "true"
        name_in_file = fields_.get("accountname") or ("devstoreaccount1" if dev_storage else None)
        if name_in_file and name_in_file != url.account:
            raise ConfigError(
                f"{env} names account {url.account} but the connection string in {url.connection_string_file} "
                f"is for {name_in_file}; make them agree"
            )
        if url.endpoint:
            if fields_.get("accountkey"):
                cred: Any = {"account_name": url.account, "account_key": fields_["accountkey"]}
            elif fields_.get("sharedaccesssignature"):
                cred = AzureSasCredential(fields_["sharedaccesssignature"].lstrip("?"))
            else:
                raise ConfigError(
                    f"connection string in {url.connection_string_file} has neither AccountKey nor SharedAccessSignature"
                )
            client = client_cls(account_url=url.endpoint, credential=cred, **opts, **environment_settings(url.endpoint))
        else:
            env_opts = environment_settings(_connection_string_endpoint(fields_, url.account, service))
            try:
                client = client_cls.from_connection_string(text, **opts, **env_opts)
            except ValueError:
                raise ConfigError(
                    f"connection string in {url.connection_string_file} is malformed; it needs AccountName and AccountKey "
                    f"(or SharedAccessSignature) and endpoints"
                ) from None
        return client, StorageTarget(url.account, client.url.rstrip("/"), hint)

    if url.sas_file:
        sas = read_secret_file(url.sas_file, "SAS token", "sas_file").lstrip("?")
        client = client_cls(
            account_url=endpoint, credential=AzureSasCredential(sas), **opts, **environment_settings(endpoint)
        )
        return client, StorageTarget(
            url.account, endpoint, f"the SAS token in {url.sas_file} (expiry, permissions, allowed IPs)"
        )

    if endpoint.startswith("http://"):
        raise ConfigError(
            f"{env} uses the plain-http endpoint {endpoint}: Azure credentials are only sent over https; "
            f"for an emulator name a connection_string_file or sas_file"
        )
    from azure.identity import DefaultAzureCredential  # noqa: PLC0415 - only this path needs it

    token_credential = DefaultAzureCredential()
    client = client_cls(account_url=endpoint, credential=token_credential, **opts, **environment_settings(endpoint))
    hint = "DefaultAzureCredential: the managed/workload identity, 'az login', or AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET"
    return client, StorageTarget(url.account, endpoint, hint, role, owned=[token_credential])


def open_service_client(
    client_cls: Any,
    url: str,
    *,
    schemes: tuple[str, ...],
    service: str,
    needs_resource: bool,
    role: str,
    connection_timeout: float = CONNECTION_TIMEOUT,
    read_timeout: float = READ_TIMEOUT,
    credential: Any = None,
) -> tuple[Any, StorageTarget, str | None]:
    """What every backend's ``from_url`` does: parse ``url``, build its service client and the
    target its errors name. Returns them with the URL's container (``None`` for queues). No
    network call is made here."""
    parsed = StorageUrl.parse(url, schemes=schemes, service=service, needs_resource=needs_resource)
    client, target = build_service_client(
        client_cls,
        parsed,
        service=service,
        role=role,
        connection_timeout=connection_timeout,
        read_timeout=read_timeout,
        credential=credential,
    )
    return client, target, parsed.resource


def storage_error(exc: BaseException, *, what: str, target: StorageTarget) -> StorageError:
    """The one-line rqp error for a failed storage call about ``what`` (e.g. ``container c``)."""
    reason = safe_reason(exc)
    acct = f"storage account {target.account}"
    if isinstance(exc, RetriesExhausted):
        return StorageUnavailableError(
            f"{acct} did not answer for {what} after {exc.attempts} attempts in {exc.elapsed:.1f}s ({reason}); "
            f"check that {target.endpoint} is reachable (network, firewall, DNS, service or emulator running)"
        )
    code = error_code(exc)
    status = status_code(exc)
    if code in AUTH_ERROR_CODES or (isinstance(exc, ClientAuthenticationError) and status in (None, 401)):
        return StorageError(f"{acct} rejected the credentials for {what} ({reason}); check {target.auth_hint}")
    if type(exc).__name__ == "CredentialUnavailableError" or (
        isinstance(exc, ClientAuthenticationError) and status is None
    ):
        return StorageError(f"no Azure credential could be obtained for {acct} ({reason}); check {target.auth_hint}")
    if status == 403:
        # AuthorizationFailure covers both a wrong account key (Azurite) and network rules (Azure)
        role = f", that the identity has {target.role}," if target.role else ""
        return StorageError(
            f"{acct} denied access to {what} ({reason}); check {target.auth_hint}{role} and the account's network rules"
        )
    if status == 404:
        return StorageError(f"{what} not found in {acct} ({reason}); check the name and {target.endpoint}")
    if isinstance(exc, AzureError):
        return StorageError(
            f"{acct} failed a request for {what} ({reason}); check {target.endpoint} and the service health"
        )
    raise exc  # not an Azure error: a bug, let it surface with its traceback
