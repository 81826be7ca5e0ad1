"""Azure backends: Blob Storage (``AzureBlobStore``), Queue Storage (``AzureMessageQueue``) and
Key Vault (``AzureKeyVaultProvider``).

Installed with the ``azure`` extra (``pip install 'rqp[azure]'``). ``rqp.connect`` imports the
submodules only when a URL names them, so this package itself imports no Azure SDK: the local
backend keeps working on machines without it.
"""

import logging
import os

__all__ = ["AzureBlobStore", "AzureKeyVaultProvider", "AzureMessageQueue", "quiet_sdk_logging"]


def quiet_sdk_logging() -> None:
    """The Azure SDK logs every HTTP request and response at INFO (``azure.core`` and the storage
    clients' policies): noise that buries rqp's own messages. Its loggers log WARNING and up
    unless ``RQP_LOG_LEVEL=DEBUG`` (or the process already logs at DEBUG)."""
    debug = os.environ.get("RQP_LOG_LEVEL", "").strip().upper() == "DEBUG" or logging.getLogger().level == logging.DEBUG
    sdk = logging.getLogger("azure")
    if not debug and (sdk.level == logging.NOTSET or sdk.level < logging.WARNING):
        sdk.setLevel(logging.WARNING)


quiet_sdk_logging()  # every Azure backend imports this package first


def __getattr__(name: str) -> object:  # lazy, for the reason above
    if name == "AzureBlobStore":
        from .blob import AzureBlobStore  # noqa: PLC0415

        return AzureBlobStore
    if name == "AzureMessageQueue":
        from .queue import AzureMessageQueue  # noqa: PLC0415

        return AzureMessageQueue
    if name == "AzureKeyVaultProvider":
        from .keyvault import AzureKeyVaultProvider  # noqa: PLC0415

        return AzureKeyVaultProvider
    raise AttributeError(name)
