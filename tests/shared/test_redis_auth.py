"""RQP_REDIS_AUTH=entra (issue 26 item 5): Microsoft Entra ID tokens as Redis credentials.

No Azure here, so the token source is a stand-in for azure-identity's credential: each token it
issues is a JWT naming a REAL Redis ACL user in its ``oid`` claim, and issuing it makes the
token one of that user's passwords -- what Azure Cache for Redis does with an identity's
unexpired tokens. Everything after ``get_token`` is the production path: ``connect_redis`` ->
``rqp.redis_auth`` -> redis-entraid's provider and token manager -> redis-py's pool. The test
then does what the cache does when a token expires: it drops the old token and the connections
that logged in with it. The client must carry on with a new token by itself.

The template tests check ``compose/azure/azuredeploy.json``'s managed Redis structurally (checkov
runs on it in ``make check-deploy``): TLS only, Entra on, access keys off, no public access, and
the data access policies are exactly ``rqp.redis_acl``'s rules, accepted by a real Redis.
"""

from __future__ import annotations

import http.server
import json
import logging
import secrets
import threading
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
import redis
from azure.core.credentials import AccessToken

from rqp.config import Settings
from rqp.connect import connect_redis
from rqp.errors import ConfigError, RedisUnavailableError
from rqp.redis_acl import managed_redis_permissions
from rqp.redis_auth import DEFAULT_REDIS_ENTRA_SCOPE, ENTRA_REFRESH_RATIO

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "compose" / "azure" / "azuredeploy.json"
#: short enough that the background renewal (at ENTRA_REFRESH_RATIO of it) comes within the test
TOKEN_SECONDS = 4.0
WAIT_SECONDS = 20.0


class RotatingCredential:
    """azure-identity's ``TokenCredential`` shape over a real Redis ACL user: every token issued
    becomes one of the user's passwords; ``expire_all_but_newest`` takes the others away."""

    def __init__(self, admin: redis.Redis, user: str, lifetime: float = TOKEN_SECONDS) -> None:
        self._admin = admin
        self.user = user
        self._lifetime = lifetime
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self.issued: list[str] = []
        self.scopes: list[tuple[str, ...]] = []
        #: (issued at, expires at) of each token, in the order issued
        self.times: list[tuple[float, float]] = []
        self.closed = False

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        with self._lock:
            if self.closed:
                raise RuntimeError("stand-in credential closed")
            now = time.time()
            claims = {"oid": self.user, "iat": int(now), "exp": int(now + self._lifetime) + 1, "n": len(self.issued)}
            token = jwt.encode(claims, self._key, algorithm="HS256")
            self._admin.acl_setuser(self.user, enabled=True, passwords=[f"+{token}"])
            self.issued.append(token)
            self.scopes.append(scopes)
            self.times.append((now, float(claims["exp"])))
            return AccessToken(token, int(claims["exp"]))

    def expire_all_but_newest(self) -> tuple[list[str], str]:
        with self._lock:
            newest = self.issued[-1]
            self._admin.acl_setuser(self.user, enabled=True, reset_passwords=True, passwords=[f"+{newest}"])
            return self.issued[:-1], newest


def _renewal_threads() -> list[threading.Thread]:
    """The live token-renewal threads (redis-py's ``TokenManager.start`` runs its event loop in a
    thread whose target is ``start_loop``)."""
    return [t for t in threading.enumerate() if t.name.endswith("(start_loop)") and t.is_alive()]


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture(autouse=True)
def no_renewal_left_behind():
    """Every test here ends with no token renewal running and no "Exception in callback
    TokenManager._renew_token()" traceback: a renewal left running after its client was closed
    (and its credential with it) printed one into ``make test``'s output each time it fired."""
    before = set(_renewal_threads())
    records = _Records()
    asyncio_log = logging.getLogger("asyncio")  # where an event loop reports a failed callback
    asyncio_log.addHandler(records)
    try:
        yield
        _wait(lambda: not set(_renewal_threads()) - before, "the token renewal to stop once its client was closed")
    finally:
        asyncio_log.removeHandler(records)
    assert not [line for line in records.lines if "_renew_token" in line or "Exception in callback" in line], (
        records.lines
    )


@pytest.fixture
def acl_user(r):
    """A real ACL user with no password yet (the stand-in adds its tokens), removed afterwards."""
    user = str(uuid.uuid4())  # an Entra object id
    r.acl_setuser(user, enabled=True, commands=["+@all"], keys=["*"], channels=["*"])
    yield user
    r.acl_deluser(user)


def _entra_settings(redis_url: str, **extra: Any) -> Settings:
    return Settings.from_mapping({"redis_url": redis_url, "redis_auth": "entra", "allow_insecure_redis": True, **extra})


def _auth_calls(admin: redis.Redis) -> int:
    return int(admin.info("commandstats").get("cmdstat_auth", {}).get("calls", 0))


def _wait(predicate, what: str, timeout: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def test_tokens_are_renewed_in_the_background_and_the_client_reconnects_with_the_new_one(r, redis_url, acl_user):
    cred = RotatingCredential(r, acl_user)
    client = connect_redis(_entra_settings(redis_url), token_credential=cred)
    try:
        # logged in as the identity (the token's oid), with a token for the Redis scope
        assert client.acl_whoami() == acl_user
        assert cred.scopes[0] == (DEFAULT_REDIS_ENTRA_SCOPE,)
        client.set("rqp:test:entra", b"before")
        first = cred.issued[0]
        issued_at_start, auth_before = len(cred.issued), _auth_calls(r)

        # the token manager renews at ENTRA_REFRESH_RATIO of the lifetime with no command from the
        # client, and redis-py re-authenticates the idle pooled connection in place (AUTH counts)
        _wait(lambda: len(cred.issued) > issued_at_start, "a token renewed in the background")
        _wait(lambda: _auth_calls(r) > auth_before, "the idle connection re-authenticated with the new token")
        renewed_at, previous_expiry = cred.times[issued_at_start][0], cred.times[issued_at_start - 1][1]
        assert renewed_at < previous_expiry, "the token was renewed only after the one in use had expired"
        assert client.get("rqp:test:entra") == b"before"

        # the cache rotates: every older token is refused from now on, and the connections that
        # logged in with them are dropped
        old, newest = cred.expire_all_but_newest()
        assert first in old
        with pytest.raises(redis.AuthenticationError):
            redis.Redis.from_url(redis_url, username=acl_user, password=first).ping()
        r.acl_log_reset()
        assert r.client_kill_filter(user=acl_user) >= 1

        # the client reconnects by itself, with a current token, and goes on
        client.set("rqp:test:entra", b"after")
        assert client.get("rqp:test:entra") == b"after"
        assert client.acl_whoami() == acl_user
        assert not [e for e in r.acl_log() if e.get("username") == acl_user], "the client tried a refused token"
        assert newest in cred.issued
    finally:
        client.close()  # stops the renewal first: a closed credential must not be asked again
        cred.closed = True


def test_closing_the_client_stops_its_token_renewal(r, redis_url, acl_user):
    cred = RotatingCredential(r, acl_user, lifetime=1.0)
    before = set(_renewal_threads())
    client = connect_redis(_entra_settings(redis_url), token_credential=cred)
    try:
        assert client.ping()
        _wait(lambda: len(cred.issued) >= 2, "a token renewed in the background")
        assert set(_renewal_threads()) - before, "no renewal thread to stop"
    finally:
        client.close()
    _wait(lambda: not set(_renewal_threads()) - before, "the token renewal to stop when the client closed")
    asked = len(cred.issued)
    cred.closed = True
    assert len(cred.issued) == asked


def test_the_renewal_ratio_is_a_named_default_that_leaves_margin():
    assert 0.5 <= ENTRA_REFRESH_RATIO <= 0.8  # an hour's token is renewed with 12-30 min to spare


def test_an_identity_without_a_data_access_policy_stops_the_role_with_one_line(r, redis_url):
    cred = RotatingCredential(r, str(uuid.uuid4()))
    r.acl_setuser(cred.user, enabled=False)  # known to the cache, but given no access
    try:
        with pytest.raises(RedisUnavailableError) as err:
            connect_redis(_entra_settings(redis_url), token_credential=cred)
    finally:
        cred.closed = True
        r.acl_deluser(cred.user)
    message = str(err.value)
    assert "\n" not in message and "refused this Entra identity" in message and "data access policy" in message


def test_no_token_at_all_says_which_identity_to_give_the_vm(redis_url):
    class NoIdentity:
        def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
            raise RuntimeError("ManagedIdentityCredential authentication unavailable")

    with pytest.raises(RedisUnavailableError) as err:
        connect_redis(_entra_settings(redis_url), token_credential=NoIdentity())
    message = str(err.value)
    assert "\n" not in message and "no Microsoft Entra token" in message and "RQP_REDIS_ENTRA_CLIENT_ID" in message


@pytest.mark.parametrize(
    ("values", "names"),
    [
        ({"redis_auth": "aad"}, ["RQP_REDIS_AUTH", "entra"]),
        ({"redis_auth": "entra", "redis_url": "redis://cache:6379/0"}, ["rediss://", ":6380"]),
        (
            {"redis_auth": "entra", "redis_url": "rediss://c:6380/0", "redis_password_file": "/run/secrets/p"},
            ["unset RQP_REDIS_PASSWORD_FILE"],
        ),
        (
            {"redis_auth": "entra", "redis_url": "rediss://c:6380/0", "redis_entra_client_id": "scheduler-id"},
            ["RQP_REDIS_ENTRA_CLIENT_ID", "GUID", "clientId"],
        ),
        (
            {"redis_auth": "entra", "redis_url": "rediss://c:6380/0", "redis_entra_scope": "redis.azure.com"},
            ["RQP_REDIS_ENTRA_SCOPE", DEFAULT_REDIS_ENTRA_SCOPE],
        ),
        ({"redis_entra_client_id": str(uuid.uuid4())}, ["RQP_REDIS_AUTH=entra"]),
    ],
)
def test_a_wrong_entra_setting_is_one_line_naming_the_fix(values, names):
    with pytest.raises(ConfigError) as err:
        Settings.from_mapping(values)
    message = str(err.value)
    assert "\n" not in message
    for name in names:
        assert name in message, message


def test_the_settings_come_from_the_environment_like_every_other():
    client_id = str(uuid.uuid4())
    env = {
        "RQP_REDIS_URL": "rediss://rqp-redis-x.redis.cache.windows.net:6380/0",
        "RQP_REDIS_AUTH": "entra",
        "RQP_REDIS_ENTRA_CLIENT_ID": client_id,
    }
    settings = Settings.load(env=env)
    assert (settings.redis_auth, settings.redis_entra_client_id) == ("entra", client_id)
    assert settings.redis_entra_scope == DEFAULT_REDIS_ENTRA_SCOPE
    assert Settings.load(env={}).redis_auth == "password"


# ---------------------------------------------------------------- the ARM template


def _template() -> dict[str, Any]:
    return json.loads(TEMPLATE.read_text())


def _resources(doc: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [res for res in doc["resources"] if res["type"] == kind]


def test_the_template_parameter_creates_a_tls_only_entra_only_private_cache():
    doc = _template()
    param = doc["parameters"]["managedRedis"]
    assert param["defaultValue"] == "none" and "azureCache" in param["allowedValues"]
    (cache,) = _resources(doc, "Microsoft.Cache/redis")
    assert cache["condition"] == "[variables('managedRedisOn')]"
    assert doc["variables"]["managedRedisOn"] == "[equals(parameters('managedRedis'), 'azureCache')]"
    props = cache["properties"]
    assert props["enableNonSslPort"] is False and props["minimumTlsVersion"] == "1.2"
    assert props["disableAccessKeyAuthentication"] is True
    assert props["redisConfiguration"]["aad-enabled"] == "true"
    assert props["publicNetworkAccess"] == "Disabled"
    assert doc["variables"]["managedRedisPort"] == 6380
    (endpoint,) = _resources(doc, "Microsoft.Network/privateEndpoints")
    assert endpoint["properties"]["privateLinkServiceConnections"][0]["properties"]["groupIds"] == ["redisCache"]
    (zone,) = _resources(doc, "Microsoft.Network/privateDnsZones")
    assert doc["variables"]["managedRedisDnsZone"] == "privatelink.redis.cache.windows.net"
    assert zone["condition"] == cache["condition"]
    assert (
        "6380" in doc["outputs"]["managedRedisUrl"]["value"]
        or "managedRedisPort" in doc["outputs"]["managedRedisUrl"]["value"]
    )
    for role in ("scheduler", "processor"):
        assert "clientId" in doc["outputs"][f"{role}RedisEntraClientId"]["value"]


def test_each_vm_identity_gets_the_policy_rendered_from_the_roles_acl(r):
    doc = _template()
    policies = {p["name"]: p for p in doc["variables"]["managedRedisPolicies"]}
    expected = {
        "rqp-scheduler-vm": ("[variables('schedulerIdentityId')]", ["scheduler", "console", "console-actions",
                                                                     "metrics-logger"]),
        "rqp-processor-vm": ("[variables('processorIdentityId')]", ["processor", "metrics-logger"]),
        "rqp-submitter": ("[variables('submitterIdentityId')]", ["submitter"]),
    }  # fmt: skip
    assert set(policies) == set(expected)
    for name, (identity, roles) in expected.items():
        policy = policies[name]
        assert policy["identity"] == identity
        assert policy["permissions"] == managed_redis_permissions(roles), (
            f"{name}: the template's permissions differ from rqp.redis_acl; regenerate them with "
            f"rqp.redis_acl.managed_redis_permissions({roles})"
        )
        # the string is a valid ACL rule (Redis 7 accepts the 6.0 syntax the cache speaks) ...
        probe = f"rqp-policy-probe-{uuid.uuid4().hex[:8]}"
        try:
            r.execute_command("ACL", "SETUSER", probe, "on", "nopass", *policy["permissions"].split())
            rules = r.acl_getuser(probe)
            # the cache allows every channel: PUBLISH would reach RQ's worker commands (F2, twelfth review)
            refused = r.execute_command("ACL", "DRYRUN", probe, "PUBLISH", "rq:pubsub:rqp-worker", "shutdown")
        finally:
            r.acl_deluser(probe)
        assert "~*" not in rules["keys"] and "+@all" not in rules["commands"]  # ... and least privilege
        assert "flushall" not in rules["commands"] and "config" not in rules["commands"]
        assert refused not in (b"OK", "OK") and "+publish" not in policy["permissions"].split(), name
    for kind in ("Microsoft.Cache/redis/accessPolicies", "Microsoft.Cache/redis/accessPolicyAssignments"):
        for res in _resources(doc, kind):
            assert "managedRedisOn" in res["condition"]
            if "copy" in res:  # the cache takes one policy change at a time
                assert (res["copy"]["mode"], res["copy"]["batchSize"]) == ("serial", 1)
    (person,) = [res for res in _resources(doc, "Microsoft.Cache/redis/accessPolicyAssignments") if "copy" not in res]
    assert person["properties"]["accessPolicyName"] == "rqp-submitter"
    assert "submitterPrincipalId" in person["condition"]


def test_the_managed_redis_resources_keep_clear_of_the_scale_set():
    doc = _template()
    managed = [res for res in doc["resources"] if "managedRedis" in json.dumps(res)]
    assert managed and not [res for res in managed if "virtualMachineScaleSets" in res["type"]]
    scale_sets = _resources(doc, "Microsoft.Compute/virtualMachineScaleSets")  # Spot and its baseline
    assert scale_sets and not [s for s in scale_sets if "managedRedis" in json.dumps(s)]


# ---------------------------------------------------------------- every role and the CLI


class TokenEndpoint:
    """A managed-identity token endpoint on loopback: azure-identity's ``ManagedIdentityCredential``
    uses it when ``IDENTITY_ENDPOINT``/``IDENTITY_HEADER`` name it (as App Service does), so the
    roles run their real credential code. Each token issued becomes a password of ``user``."""

    def __init__(self, admin: redis.Redis, user: str, client_id: str) -> None:
        self.admin, self.user, self.client_id = admin, user, client_id
        self.secret = secrets.token_hex(16)
        self.requests: list[dict[str, str]] = []
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        endpoint = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
                if self.headers.get("X-IDENTITY-HEADER") != endpoint.secret:
                    self.send_error(401)
                    return
                body = json.dumps(endpoint.issue(query)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/msi/token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def issue(self, query: dict[str, str]) -> dict[str, Any]:
        with self._lock:
            self.requests.append(query)
            now = int(time.time())
            token = jwt.encode({"oid": self.user, "iat": now, "exp": now + 3600}, self._key, algorithm="HS256")
            self.admin.acl_setuser(self.user, enabled=True, passwords=[f"+{token}"])
            return {"access_token": token, "expires_on": str(now + 3600), "resource": query.get("resource"),
                    "token_type": "Bearer"}  # fmt: skip

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_the_scheduler_the_processors_and_the_cli_log_in_with_their_managed_identity(cluster, redis_server):
    """With the default user switched off, nothing gets into Redis without an Entra token: the
    workload is packed, run by the scheduler and two workers, and read back by the CLI."""
    admin_password = secrets.token_hex(16)
    admin = redis.Redis.from_url(redis_server.url, username="rqp-test-admin", password=admin_password)
    cluster.r.acl_setuser("rqp-test-admin", enabled=True, passwords=[f"+{admin_password}"],
                          commands=["+@all"], keys=["*"], channels=["*"])  # fmt: skip
    identity, client_id = str(uuid.uuid4()), str(uuid.uuid4())
    cluster.r.acl_setuser(identity, enabled=True, commands=["+@all"], keys=["*"], channels=["*"])
    endpoint = TokenEndpoint(admin, identity, client_id)
    cluster.env.update(
        {"RQP_REDIS_AUTH": "entra", "RQP_REDIS_ENTRA_CLIENT_ID": client_id,
         "IDENTITY_ENDPOINT": endpoint.url, "IDENTITY_HEADER": endpoint.secret}
    )  # fmt: skip
    admin.acl_setuser("default", enabled=False)
    try:
        with pytest.raises(redis.AuthenticationError):
            redis.Redis.from_url(redis_server.url).ping()  # no token, no entry
        data = cluster.write_data("entra.jsonl", ({"n": i} for i in range(60)))
        wid = cluster.pack("entra", data, cluster.write_script("double.py", "def process(r):\n    return r['n'] * 2\n"))
        cluster.start_processor(2)
        cluster.wait_for(
            lambda: sum(c["user"] == identity for c in admin.client_list()) >= 2,
            what="the processor's workers logged in as the identity",
        )
        code, out = cluster.schedule(wid, timeout=120, env={"RQP_CHUNK_SIZE": "8", "RQP_ADAPTIVE_CHUNKS": "false"})
        assert code == 0, out
        assert cluster.results(wid) == {i: i * 2 for i in range(60)}
        assert not [e for e in admin.acl_log() if e.get("username") == identity], "a role tried a refused token"
        # every token was asked for the Redis resource, as the configured user-assigned identity
        assert endpoint.requests and all(
            q.get("resource") == "https://redis.azure.com" and q.get("client_id") == client_id
            for q in endpoint.requests
        ), endpoint.requests
    finally:
        admin.acl_setuser("default", enabled=True)
        cluster.stop()
        endpoint.close()
        admin.acl_deluser(identity, "rqp-test-admin")
        admin.close()
