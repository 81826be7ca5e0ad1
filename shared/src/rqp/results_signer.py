"""Which key signs a workload's results root (``rqp.results_root``), in the scheduler.

In order: the scheduler's own results key in a PEM file (``RQP_RESULTS_KEY_FILE``, Ed25519,
``rqp keygen --signing``); an EC P-256 key in Azure Key Vault (``RQP_RESULTS_KEY_VAULT_ID``, a
key id ``https://<vault>.vault.azure.net/keys/<name>[/<version>]``), which signs through the
vault's ``sign`` operation (ES256 over the statement's SHA-256; the private key never leaves the
vault; the scheduler's identity needs sign and get on that key); else the scheduler's operator
key (``RQP_OPERATOR_KEY_FILE`` or ``RQP_OPERATOR_KEY_VAULT_ID``); else none, and the root is
stored unsigned. Never the submitter's key, which processors may hold too.

Readers check a Key Vault-signed root with the key's public half alone, exported from the vault
(``az keyvault key download --vault-name VAULT --name NAME --encoding PEM --file results.pub.pem``,
or ``rqp signer --results --pem`` on a host with the scheduler's settings) and put in
``RQP_TRUSTED_RESULTS_KEYS_FILE`` or given as ``--signer``: ES256 signatures verify there as
the Ed25519 ones do.
"""

from __future__ import annotations

from .config import Settings
from .connect import open_operator_key
from .signing import LocalSigningKey, SigningKey

__all__ = ["open_results_signer"]


def open_results_signer(settings: Settings) -> SigningKey | None:
    """The key the results root is signed with (see the module's docstring); None: unsigned."""
    if settings.results_key_file is not None:
        return LocalSigningKey(settings.results_key_file)
    if settings.results_key_vault_id:
        from .azure.signing import KeyVaultSigningKey  # noqa: PLC0415 - the Azure SDK only on this path

        return KeyVaultSigningKey.from_key_id(settings.results_key_vault_id, setting="RQP_RESULTS_KEY_VAULT_ID")
    if settings.operator_key_file or settings.operator_key_vault_id:
        return open_operator_key(settings)
    return None
