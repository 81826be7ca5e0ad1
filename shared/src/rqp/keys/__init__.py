"""Key providers: where the key-encryption key lives. Chosen by ``Settings.key_url``."""

from ._base import WRAP_ALGORITHM, KeyProvider, WrappedKey
from .local import LocalKeyProvider, generate_kek

__all__ = ["WRAP_ALGORITHM", "KeyProvider", "LocalKeyProvider", "WrappedKey", "generate_kek"]
