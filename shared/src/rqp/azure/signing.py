"""A submitter signing key in Azure Key Vault (EC P-256, ES256): ``RQP_SIGNING_KEY_VAULT_ID``.

The private key never leaves the vault: ``rqp pack`` sends the SHA-256 digest of the signed
statement to the vault's ``sign`` operation (``CryptographyClient.sign``) and stores the raw
``r || s`` signature. The public key (read once with ``keys/get``) gives the fingerprint that
roles look up in ``RQP_TRUSTED_SIGNERS_FILE``; ``rqp signer --pem`` prints it for that file.
Tests use ``CryptographyClient.from_jwk`` (the same class, signing locally on a JSON Web Key),
since no offline Key Vault emulator exists.
"""

from __future__ import annotations

import hashlib
from typing import Any

from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError
from azure.keyvault.keys.crypto import CryptographyClient, SignatureAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ..errors import ConfigError, KeyProviderError
from ..signing import ES256, SigningKey, fingerprint
from ._common import DEFAULT_RETRY, RetriesExhausted, RetryPolicy, safe_reason, status_code
from .keyvault import CREDENTIAL_HINT, _parse_key_id, vault_client_setup

__all__ = ["KeyVaultSigningKey"]

SIGN_ROLE = "the 'Key Vault Crypto User' role (or sign and get in the vault's access policy)"


def _public_key(jwk: Any, key_id: str) -> ec.EllipticCurvePublicKey:
    crv = getattr(jwk, "crv", None)
    crv = getattr(crv, "value", crv)  # the SDK's enum, or a plain string
    if crv != "P-256" or not getattr(jwk, "x", None) or not getattr(jwk, "y", None):
        raise KeyProviderError(
            f"Key Vault key {key_id} is not an EC P-256 key (curve {crv}); create an EC P-256 key for signing"
        )
    numbers = ec.EllipticCurvePublicNumbers(int.from_bytes(jwk.x, "big"), int.from_bytes(jwk.y, "big"), ec.SECP256R1())
    return numbers.public_key()


class KeyVaultSigningKey(SigningKey):
    """Signs with an EC P-256 Key Vault key through a ``CryptographyClient``."""

    alg = ES256

    def __init__(
        self,
        client: CryptographyClient,
        public_jwk: Any,
        *,
        retry: RetryPolicy = DEFAULT_RETRY,
        owned: list[Any] | None = None,
    ) -> None:
        self._client = client
        self._retry = retry
        self._owned = list(owned or [])
        self.key_id: str = client.key_id or getattr(public_jwk, "kid", "") or "?"
        self._public = _public_key(public_jwk, self.key_id)
        self.fingerprint = fingerprint(self._public)

    @classmethod
    def from_key_id(
        cls, key_id: str, credential: Any = None, *, setting: str = "RQP_SIGNING_KEY_VAULT_ID"
    ) -> KeyVaultSigningKey:
        """The key ``key_id`` names, configured by ``setting`` (which errors name)."""
        ident = _parse_key_id(key_id)
        if ident is None:
            raise ConfigError(
                f"{setting} {key_id!r} is not a Key Vault key id; use https://<vault>.vault.azure.net/keys/<name>/<version>"
            )
        from azure.keyvault.keys import KeyClient  # noqa: PLC0415 - only this path needs it

        credential, options, owned = vault_client_setup(credential)
        keys = KeyClient(ident.vault_url, credential, **options)
        owned.append(keys)
        vault_key = _call(DEFAULT_RETRY, lambda: keys.get_key(ident.name, ident.version), "get", key_id, setting)
        client = CryptographyClient(vault_key.id or key_id, credential, **options)
        return cls(client, vault_key.key, owned=owned)

    @classmethod
    def from_jwk(cls, jwk: Any) -> KeyVaultSigningKey:
        """The same operations locally on a JSON Web Key (tests, offline checks)."""
        return cls(CryptographyClient.from_jwk(jwk), jwk)

    def sign(self, message: bytes) -> bytes:
        digest = hashlib.sha256(message).digest()
        result = _call(self._retry, lambda: self._client.sign(SignatureAlgorithm.es256, digest), "sign", self.key_id)
        return bytes(result.signature)

    def public_pem(self) -> bytes:
        return self._public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def close(self) -> None:
        self._client.close()
        for obj in self._owned:
            obj.close()


def _call(retry: RetryPolicy, fn: Any, op: str, key_id: str, setting: str = "RQP_SIGNING_KEY_VAULT_ID") -> Any:
    try:
        return retry.call(fn, f"Key Vault {op}")
    except RetriesExhausted as exc:
        raise KeyProviderError(
            f"Key Vault did not answer {op} for key {key_id} after {exc.attempts} attempts ({safe_reason(exc)}); check network access to the vault"
        ) from None
    except ClientAuthenticationError as exc:
        raise KeyProviderError(
            f"cannot authenticate to Key Vault for key {key_id} ({safe_reason(exc)}); check {CREDENTIAL_HINT}"
        ) from None
    except HttpResponseError as exc:
        if status_code(exc) == 403:
            raise KeyProviderError(
                f"Key Vault denied {op} on key {key_id} ({safe_reason(exc)}); grant the identity {SIGN_ROLE}"
            ) from None
        if status_code(exc) == 404:
            raise KeyProviderError(
                f"key {key_id} not found in Key Vault ({safe_reason(exc)}); check {setting}"
            ) from None
        raise KeyProviderError(f"Key Vault {op} with key {key_id} failed ({safe_reason(exc)})") from None
    except AzureError as exc:
        raise KeyProviderError(f"Key Vault {op} with key {key_id} failed ({safe_reason(exc)})") from None
    except NotImplementedError:
        raise KeyProviderError(
            f"key {key_id} does not permit {op} with ES256; use an EC P-256 key allowing sign"
        ) from None
