"""AzureKeyVaultProvider with the SDK's real CryptographyClient: locally on a JSON Web Key
(``from_jwk``; no offline Key Vault emulator exists) and, for construction and unreachable-vault
behaviour, as a remote client with a fake TokenCredential."""

from __future__ import annotations

import os
import socket
import time

import pytest
from azure.core.credentials import AccessToken
from azure.keyvault.keys import JsonWebKey
from azure.keyvault.keys.crypto import CryptographyClient
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from rqp.azure._common import RetryPolicy
from rqp.azure.keyvault import AzureKeyVaultProvider, vault_client_setup
from rqp.config import Settings
from rqp.connect import open_key_provider
from rqp.errors import ConfigError, KeyProviderError, WrongKeyError
from rqp.keys import WRAP_ALGORITHM, WrappedKey

OAEP_SHA256 = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
KEY_ID = "https://myvault.vault.azure.net/keys/kek/0123abcd"


class FakeCredential:
    """A TokenCredential that counts how often it is asked: a construction must not ask."""

    def __init__(self) -> None:
        self.calls = 0

    def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        self.calls += 1
        return AccessToken("not-a-real-token", int(time.time()) + 3600)


def _b(n: int) -> bytes:
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


def make_jwk(kid: str, key: rsa.RSAPrivateKey) -> JsonWebKey:
    priv = key.private_numbers()
    pub = priv.public_numbers
    return JsonWebKey(
        kid=kid, kty="RSA", key_ops=["wrapKey", "unwrapKey"],
        n=_b(pub.n), e=_b(pub.e), d=_b(priv.d), p=_b(priv.p), q=_b(priv.q),
        dp=_b(priv.dmp1), dq=_b(priv.dmq1), qi=_b(priv.iqmp),
    )  # fmt: skip


@pytest.fixture(scope="module")
def rsa_keys() -> tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]:
    return tuple(rsa.generate_private_key(public_exponent=65537, key_size=3072) for _ in range(2))  # type: ignore[return-value]


@pytest.fixture
def provider(rsa_keys) -> AzureKeyVaultProvider:
    return AzureKeyVaultProvider(CryptographyClient.from_jwk(make_jwk(KEY_ID, rsa_keys[0])))


def test_wrap_unwrap_round_trip(provider):
    data_key = os.urandom(32)
    wrapped = provider.wrap(data_key)
    assert wrapped.kek_id == KEY_ID == provider.kek_id
    assert wrapped.algorithm == WRAP_ALGORITHM == "RSA-OAEP-256"
    assert len(wrapped.wrapped) == 384 and data_key not in wrapped.wrapped
    assert provider.unwrap(wrapped) == data_key
    assert provider.unwrap(WrappedKey.from_json(wrapped.to_json())) == data_key
    assert provider.wrap(data_key).wrapped != wrapped.wrapped  # OAEP is randomised


def test_output_is_standard_rsa_oaep_sha256(provider, rsa_keys):
    data_key = os.urandom(32)
    assert rsa_keys[0].decrypt(provider.wrap(data_key).wrapped, OAEP_SHA256) == data_key
    # and the other way: a key wrapped by any RSA-OAEP-256 implementation unwraps here
    foreign = rsa_keys[0].public_key().encrypt(data_key, OAEP_SHA256)
    assert provider.unwrap(WrappedKey(KEY_ID, WRAP_ALGORITHM, foreign)) == data_key


def test_from_jwk_uses_the_kid(rsa_keys):
    p = AzureKeyVaultProvider.from_jwk(make_jwk("local-kek-1", rsa_keys[1]))
    assert p.kek_id == "local-kek-1" and p.describe() == "local-kek-1"
    key = os.urandom(32)
    assert p.unwrap(p.wrap(key)) == key


def test_key_wrapped_under_another_kek_id_is_wrong_key_naming_both(provider, rsa_keys):
    other = AzureKeyVaultProvider.from_jwk(make_jwk("https://othervault.vault.azure.net/keys/kek/99", rsa_keys[1]))
    wrapped = other.wrap(os.urandom(32))
    with pytest.raises(WrongKeyError) as exc:
        provider.unwrap(wrapped)
    msg = str(exc.value)
    assert "https://othervault.vault.azure.net/keys/kek/99" in msg and KEY_ID in msg and "\n" not in msg


def test_same_kid_but_different_key_material_is_wrong_key(provider, rsa_keys):
    impostor = AzureKeyVaultProvider.from_jwk(make_jwk(KEY_ID, rsa_keys[1]))
    with pytest.raises(WrongKeyError, match="does not decrypt"):
        provider.unwrap(impostor.wrap(os.urandom(32)))


def test_tampered_wrapped_key_is_wrong_key(provider):
    wrapped = provider.wrap(os.urandom(32))
    flipped = bytes([wrapped.wrapped[0] ^ 1]) + wrapped.wrapped[1:]
    with pytest.raises(WrongKeyError):
        provider.unwrap(WrappedKey(wrapped.kek_id, wrapped.algorithm, flipped))


def test_other_algorithm_is_refused(provider):
    wrapped = provider.wrap(os.urandom(32))
    with pytest.raises(WrongKeyError, match="RSA1_5"):
        provider.unwrap(WrappedKey(wrapped.kek_id, "RSA1_5", wrapped.wrapped))


def test_from_key_id_builds_a_remote_client_without_network():
    cred = FakeCredential()
    p = AzureKeyVaultProvider.from_key_id(KEY_ID, credential=cred)
    assert isinstance(p.client, CryptographyClient)
    assert p.client.key_id == KEY_ID and p.kek_id == KEY_ID
    assert p.client.vault_url == "https://myvault.vault.azure.net" == p.vault_url
    assert cred.calls == 0


def test_vault_clients_share_one_setup_timeouts_and_no_sdk_retries():
    """Both Key Vault clients (KEK and signing key) are opened by ``vault_client_setup``: a given
    credential is used and not owned; the SDK's retries are off (``RetryPolicy`` is the one layer)."""
    cred = FakeCredential()
    got, options, owned = vault_client_setup(cred, connection_timeout=2.0, read_timeout=7.0)
    assert got is cred and owned == []
    assert options == {"connection_timeout": 2.0, "read_timeout": 7.0, "retry_total": 0}
    p = AzureKeyVaultProvider.from_key_id(KEY_ID, credential=cred, connection_timeout=2.0, read_timeout=7.0)
    assert p._options == options
    assert cred.calls == 0


def test_versioned_key_refuses_other_versions_before_calling_the_vault():
    cred = FakeCredential()
    p = AzureKeyVaultProvider.from_key_id(KEY_ID, credential=cred)
    older = "https://myvault.vault.azure.net/keys/kek/00000000"
    with pytest.raises(WrongKeyError) as exc:
        p.unwrap(WrappedKey(older, WRAP_ALGORITHM, b"\x00" * 384))
    assert older in str(exc.value) and KEY_ID in str(exc.value)
    assert cred.calls == 0


@pytest.mark.parametrize(
    "bad",
    [
        "not a url",
        "https://myvault.vault.azure.net/secrets/kek/0123abcd",
        "http://myvault.vault.azure.net/keys/kek/0123abcd",
        "https://myvault.vault.azure.net/keys",
    ],
)
def test_bad_key_ids_are_config_errors(bad):
    with pytest.raises(ConfigError, match="RQP_KEY_VAULT_KEY_ID"):
        AzureKeyVaultProvider.from_key_id(bad, credential=FakeCredential())


def test_unreachable_vault_is_a_key_provider_error_after_bounded_retries():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once we leave: connections are refused
    key_id = f"https://127.0.0.1:{port}/keys/kek/0123abcd"
    p = AzureKeyVaultProvider.from_key_id(
        key_id,
        credential=FakeCredential(),
        retry=RetryPolicy(attempts=3, initial_wait=0.05, max_wait=0.1, deadline=5.0),
    )
    start = time.monotonic()
    with pytest.raises(KeyProviderError) as exc:
        p.unwrap(WrappedKey(key_id, WRAP_ALGORITHM, b"\x00" * 384))
    assert time.monotonic() - start < 5.0
    msg = str(exc.value)
    assert not isinstance(exc.value, WrongKeyError)
    assert key_id in msg and "after 3 attempts" in msg and "\n" not in msg


def test_connect_opens_key_vault_provider_from_settings():
    """``open_key_provider`` reaches ``from_key_id`` with the settings' key id (DefaultAzureCredential
    is built lazily and asked for nothing here)."""
    p = open_key_provider(Settings(key_vault_key_id=KEY_ID))
    try:
        assert isinstance(p, AzureKeyVaultProvider) and p.kek_id == KEY_ID
    finally:
        p.close()
