"""The key-provider interface: wrap and unwrap a workload's data key under a key-encryption key.

A provider never hands out the KEK itself, so a backend whose private key never leaves a vault
(Azure Key Vault) fits the same interface as a PEM file on disk.
"""

from __future__ import annotations

import base64
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass

from ..errors import IntegrityError

__all__ = ["WRAP_ALGORITHM", "KeyProvider", "WrappedKey"]

WRAP_ALGORITHM = "RSA-OAEP-256"


@dataclass(frozen=True)
class WrappedKey:
    """A data key wrapped under the KEK named by ``kek_id``; safe to store anywhere."""

    kek_id: str
    algorithm: str
    wrapped: bytes

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "kek_id": self.kek_id,
                "algorithm": self.algorithm,
                "wrapped": base64.b64encode(self.wrapped).decode(),
            },
            sort_keys=True,
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> WrappedKey:
        try:
            doc = json.loads(raw)
            return cls(doc["kek_id"], doc["algorithm"], base64.b64decode(doc["wrapped"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise IntegrityError(f"wrapped key blob is malformed ({exc}); re-pack the workload") from None


class KeyProvider(ABC):
    """Wraps and unwraps data keys. Implementations: ``LocalKeyProvider`` (PEM files),
    ``AzureKeyVaultProvider`` (Key Vault keys)."""

    #: a stable identifier of the KEK (fingerprint or key URL), recorded with every wrapped key
    kek_id: str

    @abstractmethod
    def wrap(self, data_key: bytes) -> WrappedKey:
        """Wrap with the public half; works without access to the private key."""

    @abstractmethod
    def unwrap(self, wrapped: WrappedKey) -> bytes:
        """Unwrap; raises ``WrongKeyError`` naming both key ids when the KEK does not match."""

    def describe(self) -> str:
        return self.kek_id
