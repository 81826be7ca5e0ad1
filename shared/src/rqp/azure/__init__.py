"""Azure backends: Blob Storage (``AzureBlobStore``), Queue Storage (``AzureMessageQueue``) and
Key Vault (``AzureKeyVaultProvider``).

Installed with the ``azure`` extra (``pip install 'rqp[azure]'``). ``rqp.connect`` imports the
submodules only when a URL names them, so this package itself imports no Azure SDK: the local
backend keeps working on machines without it.
"""

__all__ = ["AzureBlobStore", "AzureKeyVaultProvider", "AzureMessageQueue"]


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
