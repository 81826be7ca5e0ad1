"""A local Azure Key Vault REST stub: the few operations of the keys API rqp's signers use, as
Key Vault documents them, over HTTPS with the real SDK on the other end (``KeyClient``,
``CryptographyClient``, ``DefaultAzureCredential``), so no test signs through a mock.

* ``POST /keys/{name}/create`` (``{"kty": "EC", "crv": "P-256"}``): a key pair is created here,
  in the stub; its private half never leaves it.
* ``GET /keys/{name}[/{version}]``: the key bundle, the public half as a JSON Web Key.
* ``POST /keys/{name}/{version}/sign`` (``{"alg": "ES256", "value": base64url(SHA-256 digest)}``):
  ``{"kid", "value": base64url(r || s)}``, as the vault answers; another algorithm is a 400.
* Authentication as Key Vault does it: a request without a bearer token gets a 401 whose
  ``WWW-Authenticate`` challenge names the authority and the resource; the token comes from a
  managed-identity endpoint served here too (App Service style: ``IDENTITY_ENDPOINT`` and
  ``IDENTITY_HEADER``, which ``DefaultAzureCredential`` reads), so a role process started with
  ``env()`` reaches the stub with no code of its own.

The SDK requires the vault's host to end with ``.`` + the challenge's resource host; a stub on
``127.0.0.1`` names its resource ``0.0.1:PORT`` for that. TLS uses a certificate made at start for
127.0.0.1, trusted through ``REQUESTS_CA_BUNDLE``.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import json
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature
from cryptography.x509.oid import NameOID

__all__ = ["KeyVaultStub"]

TOKEN = "stub-vault-token"
IDENTITY_HEADER = "stub-identity-header"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA): (cert, key) PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rqp key vault stub")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "vault-stub.crt", directory / "vault-stub.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@dataclass
class KeyVaultStub:
    """The stub server; ``start()`` it, ``stop()`` it. ``signs`` records each sign request."""

    directory: Path
    keys: dict[str, dict[str, ec.EllipticCurvePrivateKey]] = field(default_factory=dict)
    signs: list[dict[str, Any]] = field(default_factory=list)
    unauthenticated: int = 0

    def start(self) -> KeyVaultStub:
        self.cert, key = _certificate(self.directory)
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                stub._handle(self, "GET")

            def do_POST(self) -> None:
                stub._handle(self, "POST")

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, key)
        self._server.socket = ctx.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, name="keyvault-stub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    def env(self) -> dict[str, str]:
        """What a role process needs to reach the stub with ``DefaultAzureCredential``."""
        return {
            "IDENTITY_ENDPOINT": f"{self.url}/msi/token",
            "IDENTITY_HEADER": IDENTITY_HEADER,
            "REQUESTS_CA_BUNDLE": str(self.cert),
        }

    def create_ec_key(self, name: str) -> str:
        """A new P-256 key version made here (as ``keys/{name}/create`` does); its key id."""
        version = uuid.uuid4().hex
        self.keys.setdefault(name, {})[version] = ec.generate_private_key(ec.SECP256R1())
        return f"{self.url}/keys/{name}/{version}"

    def public_pem(self, key_id: str) -> bytes:
        """The public key of ``key_id`` as PEM (what ``az keyvault key download --encoding PEM`` writes)."""
        name, version = urlparse(key_id).path.split("/")[2:4]
        return (
            self.keys[name][version]
            .public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )

    # ------------------------------------------------------------------ HTTP
    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        url = urlparse(h.path)
        parts = [p for p in url.path.split("/") if p]
        try:
            if parts == ["msi", "token"]:
                status, doc, headers = self._token(h, parse_qs(url.query))
            elif h.headers.get("Authorization") != f"Bearer {TOKEN}":
                self.unauthenticated += 1
                port = self._server.server_address[1]
                challenge = (
                    'Bearer authorization="https://login.microsoftonline.com/stub-tenant", '
                    f'resource="https://0.0.1:{port}"'
                )
                status, doc, headers = (
                    401,
                    {"error": {"code": "Unauthorized", "message": "no token"}},
                    {"WWW-Authenticate": challenge},
                )
            else:
                status, doc, headers = self._keys(method, parts, body)
        except Exception as exc:  # the stub's own bug: say so to the client rather than hang
            status, doc, headers = 500, {"error": {"code": "StubError", "message": repr(exc)}}, {}
        data = json.dumps(doc).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json; charset=utf-8")
        h.send_header("Content-Length", str(len(data)))
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)

    def _token(self, h: BaseHTTPRequestHandler, query: dict[str, list[str]]) -> tuple[int, dict, dict[str, str]]:
        if h.headers.get("X-IDENTITY-HEADER") != IDENTITY_HEADER:
            return 401, {"error": "invalid identity header"}, {}
        resource = (query.get("resource") or [""])[0]
        doc = {"access_token": TOKEN, "expires_on": str(int(time.time()) + 3600), "resource": resource}
        return 200, {**doc, "token_type": "Bearer"}, {}

    def _bundle(self, name: str, version: str) -> dict[str, Any]:
        numbers = self.keys[name][version].public_key().public_numbers()
        now = int(time.time())
        return {
            "key": {
                "kid": f"{self.url}/keys/{name}/{version}",
                "kty": "EC",
                "crv": "P-256",
                "x": _b64url(numbers.x.to_bytes(32, "big")),
                "y": _b64url(numbers.y.to_bytes(32, "big")),
                "key_ops": ["sign", "verify"],
            },
            "attributes": {"enabled": True, "created": now, "updated": now, "recoveryLevel": "Recoverable"},
        }

    def _keys(self, method: str, parts: list[str], body: bytes) -> tuple[int, dict, dict[str, str]]:
        if len(parts) < 2 or parts[0] != "keys":
            return 404, {"error": {"code": "NotFound", "message": "/".join(parts)}}, {}
        name = parts[1]
        if method == "POST" and parts[2:] == ["create"]:
            req = json.loads(body or b"{}")
            if req.get("kty") not in ("EC", "EC-HSM") or req.get("crv", "P-256") != "P-256":
                return 400, {"error": {"code": "BadParameter", "message": "the stub creates EC P-256 keys only"}}, {}
            version = self.create_ec_key(name).rsplit("/", 1)[1]
            return 200, self._bundle(name, version), {}
        versions = self.keys.get(name)
        if not versions:
            return 404, {"error": {"code": "KeyNotFound", "message": f"A key with (name/id) {name} was not found"}}, {}
        version = parts[2] if len(parts) > 2 and parts[2] != "sign" else list(versions)[-1]
        if version not in versions:
            return 404, {"error": {"code": "KeyNotFound", "message": f"key {name}/{version} was not found"}}, {}
        if method == "GET" and len(parts) <= 3:
            return 200, self._bundle(name, version), {}
        if method == "POST" and parts[-1] == "sign":
            req = json.loads(body)
            digest = _unb64url(req["value"])
            self.signs.append({"key": f"{name}/{version}", "alg": req.get("alg"), "digest": digest})
            if req.get("alg") != "ES256" or len(digest) != hashlib.sha256().digest_size:
                return 400, {"error": {"code": "BadParameter", "message": "ES256 over a SHA-256 digest only"}}, {}
            der = versions[version].sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
            r, s = decode_dss_signature(der)
            raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
            return 200, {"kid": f"{self.url}/keys/{name}/{version}", "value": _b64url(raw)}, {}
        return 405, {"error": {"code": "NotSupported", "message": f"{method} {'/'.join(parts)}"}}, {}
