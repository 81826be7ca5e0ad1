"""A ``KeyProvider`` whose key-encryption key lives in Azure Key Vault (or Managed HSM).

Configured by ``RQP_KEY_VAULT_KEY_ID``, a key id such as
``https://<vault>.vault.azure.net/keys/<name>/<version>``. The credential is
DefaultAzureCredential (managed identity, workload identity, ``az login``, or azure-identity's
AZURE_CLIENT_ID / AZURE_TENANT_ID / ... variables): no secret is ever configured in rqp itself.

Wrapping is RSA-OAEP-256 through the SDK's ``CryptographyClient``: with ``keys/get`` permission
the SDK wraps locally with the public key and only unwrapping goes to the vault, so the private
key never leaves it. Tests use ``CryptographyClient.from_jwk`` (the same class, operating
locally on a JSON Web Key) since no offline Key Vault emulator exists.

``kek_id`` recorded with each wrapped key is the versioned key id the SDK reports (or the JWK's
``kid``). Configuring an *unversioned* key id lets a processor unwrap keys wrapped under any
version of that key, which is what a key rotation needs; a versioned id accepts only itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError
from azure.keyvault.keys import KeyVaultKeyIdentifier
from azure.keyvault.keys.crypto import CryptographyClient, KeyWrapAlgorithm

from ..errors import ConfigError, KeyProviderError, WrongKeyError
from ..keys._base import WRAP_ALGORITHM, KeyProvider, WrappedKey
from ._common import (
    CONNECTION_TIMEOUT,
    DEFAULT_RETRY,
    READ_TIMEOUT,
    RetriesExhausted,
    RetryPolicy,
    client_options,
    safe_reason,
    status_code,
)

__all__ = ["KEY_WRAP_ALGORITHM", "AzureKeyVaultProvider", "vault_client_setup"]

T = TypeVar("T")

#: the SDK wants its enum here; a plain string fails in ``unwrap_key``
KEY_WRAP_ALGORITHM = KeyWrapAlgorithm.rsa_oaep_256
assert KEY_WRAP_ALGORITHM.value == WRAP_ALGORITHM
ROLE = "the 'Key Vault Crypto User' role (or wrapKey/unwrapKey/get in the vault's access policy)"
CREDENTIAL_HINT = "DefaultAzureCredential: the managed/workload identity, 'az login', or AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET"


def vault_client_setup(
    credential: Any = None, *, connection_timeout: float = CONNECTION_TIMEOUT, read_timeout: float = READ_TIMEOUT
) -> tuple[Any, dict[str, Any], list[Any]]:
    """What every Key Vault client of rqp is opened with: ``credential`` (DefaultAzureCredential
    when none is given), the client options (our timeouts, the SDK's retries off: ``RetryPolicy``
    is the one retry layer, as for storage), and the objects created here that the caller owns
    and must close."""
    owned: list[Any] = []
    if credential is None:
        from azure.identity import DefaultAzureCredential  # noqa: PLC0415 - only this path needs it

        credential = DefaultAzureCredential()
        owned.append(credential)
    return credential, client_options(connection_timeout, read_timeout, api_version=None), owned


def _parse_key_id(key_id: str) -> KeyVaultKeyIdentifier | None:
    try:
        ident = KeyVaultKeyIdentifier(key_id)
    except ValueError:
        return None
    parts = [p for p in key_id.split("?", maxsplit=1)[0].split("/") if p]
    if not key_id.startswith("https://") or len(parts) < 4 or parts[2] != "keys":
        return None
    return ident


class AzureKeyVaultProvider(KeyProvider):
    """Wraps and unwraps data keys with one Key Vault key through a ``CryptographyClient``."""

    def __init__(
        self,
        client: CryptographyClient,
        *,
        credential: Any = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        client_options: dict[str, Any] | None = None,
        owned: list[Any] | None = None,
    ) -> None:
        """``client`` may be remote (``from_key_id``) or local (``CryptographyClient.from_jwk``).

        ``credential`` is needed only to open clients for other versions of an unversioned key.
        """
        key_id = client.key_id
        if not key_id:
            raise KeyProviderError("the Key Vault client has no key id (a JWK without 'kid'); give the key a kid")
        self._client = client
        self._credential = credential
        self._retry = retry
        self._options = dict(client_options or {})
        self._owned = list(owned or [])
        self._versions: dict[str, CryptographyClient] = {}
        self.kek_id: str = key_id
        self.vault_url: str | None = client.vault_url

    @classmethod
    def from_key_id(
        cls,
        key_id: str,
        credential: Any = None,
        *,
        retry: RetryPolicy = DEFAULT_RETRY,
        connection_timeout: float = CONNECTION_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
    ) -> AzureKeyVaultProvider:
        """A provider for the vault key ``key_id``; no network call is made here."""
        if _parse_key_id(key_id) is None:
            raise ConfigError(
                f"RQP_KEY_VAULT_KEY_ID {key_id!r} is not a Key Vault key id; use https://<vault>.vault.azure.net/keys/<name>/<version>"
            )
        credential, options, owned = vault_client_setup(
            credential, connection_timeout=connection_timeout, read_timeout=read_timeout
        )
        client = CryptographyClient(key_id, credential, **options)
        return cls(client, credential=credential, retry=retry, client_options=options, owned=owned)

    @classmethod
    def from_jwk(cls, jwk: Any) -> AzureKeyVaultProvider:
        """A provider doing the same operations locally on a JSON Web Key (tests, offline checks)."""
        return cls(CryptographyClient.from_jwk(jwk))

    @property
    def client(self) -> CryptographyClient:
        return self._client

    # ------------------------------------------------------------------ plumbing

    def _call(self, fn: Callable[[], T], op: str, key_id: str) -> T:
        try:
            return self._retry.call(fn, f"Key Vault {op}")
        except RetriesExhausted as exc:
            raise KeyProviderError(
                f"Key Vault {self.vault_url} did not answer {op} for key {key_id} after {exc.attempts} attempts "
                f"in {exc.elapsed:.1f}s ({safe_reason(exc)}); check network access to the vault"
            ) from None
        except ClientAuthenticationError as exc:
            raise KeyProviderError(
                f"cannot authenticate to Key Vault for key {key_id} ({safe_reason(exc)}); check {CREDENTIAL_HINT}"
            ) from None
        except HttpResponseError as exc:
            status = status_code(exc)
            if status == 403:
                raise KeyProviderError(
                    f"Key Vault denied {op} on key {key_id} ({safe_reason(exc)}); grant the identity {ROLE}"
                ) from None
            if status == 404:
                raise KeyProviderError(
                    f"key {key_id} not found in Key Vault ({safe_reason(exc)}); check RQP_KEY_VAULT_KEY_ID"
                ) from None
            if status == 400 and op == "unwrapKey":
                raise WrongKeyError(
                    f"the wrapped data key does not decrypt under KEK {key_id} ({safe_reason(exc)}): wrong key or a tampered key blob"
                ) from None
            raise KeyProviderError(f"Key Vault {op} with key {key_id} failed ({safe_reason(exc)})") from None
        except AzureError as exc:
            if type(exc).__name__ == "CredentialUnavailableError":
                raise KeyProviderError(
                    f"no Azure credential available for Key Vault key {key_id}; check {CREDENTIAL_HINT}"
                ) from None
            raise KeyProviderError(f"Key Vault {op} with key {key_id} failed ({safe_reason(exc)})") from None
        except NotImplementedError:
            raise KeyProviderError(
                f"key {key_id} does not permit {op} with {WRAP_ALGORITHM}; use an RSA key allowing wrapKey and unwrapKey"
            ) from None

    def _client_for(self, recorded: str) -> CryptographyClient:
        """The client that can unwrap a key wrapped under ``recorded``, or ``WrongKeyError``."""
        if recorded in (self.kek_id, self._client.key_id):
            return self._client
        mine, theirs = _parse_key_id(self.kek_id), _parse_key_id(recorded)
        if mine and theirs and (mine.vault_url, mine.name) == (theirs.vault_url, theirs.name):
            if theirs.version is None or (mine.version is None and self._credential is None):
                return self._client  # cannot tell versions apart: let the vault decide
            if mine.version is None:
                if recorded not in self._versions:
                    self._versions[recorded] = CryptographyClient(recorded, self._credential, **self._options)
                return self._versions[recorded]
        raise WrongKeyError(
            f"wrong key: the workload's data key is wrapped under KEK {recorded}, but the configured KEK is {self.kek_id}; "
            f"set RQP_KEY_VAULT_KEY_ID to the key it was packed with"
        )

    # ------------------------------------------------------------------ interface

    def wrap(self, data_key: bytes) -> WrappedKey:
        result = self._call(lambda: self._client.wrap_key(KEY_WRAP_ALGORITHM, data_key), "wrapKey", self.kek_id)
        return WrappedKey(result.key_id or self.kek_id, WRAP_ALGORITHM, result.encrypted_key)

    def unwrap(self, wrapped: WrappedKey) -> bytes:
        if wrapped.algorithm != WRAP_ALGORITHM:
            raise WrongKeyError(f"data key is wrapped with {wrapped.algorithm}; rqp expects {WRAP_ALGORITHM}")
        client = self._client_for(wrapped.kek_id)
        try:
            result = self._call(
                lambda: client.unwrap_key(KEY_WRAP_ALGORITHM, wrapped.wrapped), "unwrapKey", wrapped.kek_id
            )
        except ValueError:
            # a local (JWK) client reports a failed OAEP decryption as ValueError
            raise WrongKeyError(
                f"the wrapped data key does not decrypt under KEK {wrapped.kek_id}: wrong key or a tampered key blob"
            ) from None
        return result.key

    def close(self) -> None:
        for client in (self._client, *self._versions.values()):
            client.close()
        for cred in self._owned:
            cred.close()
