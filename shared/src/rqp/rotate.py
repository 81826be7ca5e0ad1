"""Re-wrap workloads' data keys under a new key-encryption key (``rqp rotate-key``, in
``rqp.cli.keys``).

Every workload's data is encrypted under its own random data key; only that key is wrapped
under the KEK (``workloads/<id>/key.json``). Rotating the KEK therefore re-wraps a few hundred
bytes per workload and never touches ``data.enc``, ``script.enc``, results or Redis:

1. read ``key.json`` and ``manifest.json``; check the submitter's signature against the trusted
   signers (``RQP_TRUSTED_SIGNERS_FILE``), then unwrap the data key with the old KEK (or with the
   new one, when an earlier interrupted run already re-wrapped it);
2. verify the manifest's MAC with that data key *before* anything is rewritten, so a rotation
   never blesses a tampered or unsigned workload with a fresh MAC and signature;
3. keep the signed ``key.json`` as ``key.previous.json``, write ``key.json`` wrapped under the new
   KEK, then ``manifest.json`` naming the new ``kek_id`` with a fresh MAC and the rotator's
   signature (the signature covers the wrapped key, so it must be renewed; the rotator's key must
   itself be trusted), then delete ``key.previous.json`` -- every write atomic;
4. check the result: the new ``key.json`` names the new KEK and, when the new private key is at
   hand, unwraps to the same data key; the new manifest verifies under the trusted signers.

Each step is idempotent and the data key never changes, so a rotation interrupted at any point is
finished by running it again, and a workload already under the new KEK is reported as such.
Once every workload reports ``rotated`` or ``already``, the old KEK can be revoked (deleted, or
disabled in Key Vault): nothing rqp stores still needs it.

Rotation is KEK hygiene, not recovery from a data-key compromise: a workload whose data key
leaked (or whose old ``key.json`` an attacker copied together with the old private KEK) must be
re-packed, which creates a new data key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from .errors import BlobNotFoundError, IntegrityError, KeyProviderError, RqpError, WorkloadError, WrongKeyError
from .keys import KeyProvider, LocalKeyProvider, WrappedKey
from .signing import SigningKey, TrustStore
from .storage import BlobStore
from .workload import Manifest, blob_name, check_workload_id, verify_signature

__all__ = [
    "RotationResult",
    "list_workloads",
    "open_provider",
    "rotate_keys",
    "rotate_workload",
]

ROTATED = "rotated"
ALREADY = "already"
ERROR = "error"


@dataclass(frozen=True)
class RotationResult:
    """What happened to one workload."""

    workload: str
    #: ``rotated`` (re-wrapped now), ``already`` (was under the new KEK), ``error``
    status: str
    #: the KEK the data key was wrapped under before this run (None when unreadable)
    old_kek_id: str | None
    new_kek_id: str
    #: one line, for ``error``
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status != ERROR

    def line(self) -> str:
        if self.status == ROTATED:
            return f"{self.workload}: rotated: data key re-wrapped from {self.old_kek_id} to {self.new_kek_id}; manifest re-signed; data untouched"
        if self.status == ALREADY:
            return f"{self.workload}: already under {self.new_kek_id}; nothing to do"
        return f"{self.workload}: error: {self.error}"


def list_workloads(store: BlobStore) -> list[str]:
    """Ids of every workload in the store that has a wrapped key (``workloads/*/key.json``)."""
    ids = []
    for name in store.list("workloads/"):
        parts = name.split("/")
        if len(parts) == 3 and parts[2] == "key.json":
            ids.append(parts[1])
    return sorted(set(ids))


def rotate_workload(
    store: BlobStore,
    old: KeyProvider | None,
    new: KeyProvider,
    workload_id: str,
    *,
    trust: TrustStore,
    signer: SigningKey,
) -> RotationResult:
    """Re-wrap one workload's data key under ``new`` and re-sign it with ``signer``; see the
    module docstring."""
    new_id = new.kek_id
    old_id: str | None = None
    key: bytes | None = None
    try:
        check_workload_id(workload_id)
        key_name = blob_name(workload_id, "key.json")
        manifest_name = blob_name(workload_id, "manifest.json")
        if not store.exists(key_name):
            raise WorkloadError(f"workload {workload_id} has no key.json in {store.location}; check the workload id")
        if not store.exists(manifest_name):
            raise WorkloadError(
                f"workload {workload_id} has no manifest.json in {store.location} (packing never finished); re-pack it"
            )
        previous_name = blob_name(workload_id, "key.previous.json")
        wrapped = WrappedKey.from_json(store.get(key_name))
        manifest = Manifest.from_json(store.get(manifest_name), workload_id)
        old_id = wrapped.kek_id
        already = wrapped.kek_id == new_id
        if already and manifest.kek_id == new_id:
            verify_signature(manifest, wrapped, trust)
            if store.exists(previous_name):
                store.delete(previous_name)
            return RotationResult(workload_id, ALREADY, old_id, new_id)
        if already:
            # re-wrapped by an interrupted run: the manifest is still signed over the old key.json
            try:
                previous = WrappedKey.from_json(store.get(previous_name))
            except BlobNotFoundError:
                raise IntegrityError(
                    f"key.json of workload {workload_id} names {new_id} but its manifest names {manifest.kek_id} and the signed "
                    f"key.previous.json is missing: changed outside rqp; re-pack the workload"
                ) from None
            verify_signature(manifest, previous, trust)
            old_id = previous.kek_id
            key = old.unwrap(previous) if old is not None and previous.kek_id == old.kek_id else new.unwrap(wrapped)
        elif old is None:
            raise KeyProviderError(
                f"its data key is wrapped under KEK {wrapped.kek_id} and no old KEK was given; pass it as --old-kek (or set RQP_KEK_FILE)"
            )
        else:
            verify_signature(manifest, wrapped, trust)
            try:
                key = old.unwrap(wrapped)
            except WrongKeyError as exc:
                raise WrongKeyError(
                    f"{exc} (rotating to {new_id}: pass the KEK it is wrapped under as --old-kek)"
                ) from None
        # never re-sign a manifest that does not verify under this data key
        manifest.verify(key)
        if already:
            new_wrapped = wrapped
        else:
            store.put(previous_name, wrapped.to_json())  # still what the manifest's signature covers
            new_wrapped = new.wrap(key)
            store.put(key_name, new_wrapped.to_json())
        rotated = (
            dataclasses.replace(manifest, kek_id=new_id, mac="", signature=None)
            .signed(key)
            .with_signature(signer, new_wrapped)
        )
        store.put(manifest_name, rotated.to_json())
        store.delete(previous_name)
        # read back what a role will read
        check = WrappedKey.from_json(store.get(key_name))
        if check.kek_id != new_id:
            raise IntegrityError(
                f"key.json of workload {workload_id} does not name {new_id} after rewriting it; the blob store lost the write"
            )
        if _can_unwrap(new) and new.unwrap(check) != key:
            raise IntegrityError(
                f"key.json of workload {workload_id} does not unwrap to its data key under {new_id} after rewriting it"
            )
        final = Manifest.from_json(store.get(manifest_name), workload_id)
        final.verify(key)
        verify_signature(final, check, trust)
        return RotationResult(workload_id, ROTATED, old_id, new_id)
    except RqpError as exc:
        return RotationResult(workload_id, ERROR, old_id, new_id, str(exc))
    finally:
        del key


def _can_unwrap(provider: KeyProvider) -> bool:
    if isinstance(provider, LocalKeyProvider):
        return provider._private is not None
    return True


def rotate_keys(
    store: BlobStore,
    old: KeyProvider | None,
    new: KeyProvider,
    workloads: list[str] | None = None,
    *,
    trust: TrustStore,
    signer: SigningKey,
) -> list[RotationResult]:
    """Re-wrap the data keys of ``workloads`` (default: every workload in ``store``) under
    ``new``, re-signed by ``signer``. Returns one ``RotationResult`` per workload; one workload's
    error does not stop the others. Idempotent: running it again after success reports every
    workload ``already``."""
    if signer.fingerprint not in trust.signers:
        raise KeyProviderError(
            f"your signing key {signer.fingerprint} is not in RQP_TRUSTED_SIGNERS_FILE ({trust.source}): the roles would refuse "
            f"every rotated workload; add its public key there first ('rqp signer --pem')"
        )
    ids = list(dict.fromkeys(workloads)) if workloads else list_workloads(store)
    return [rotate_workload(store, old, new, wid, trust=trust, signer=signer) for wid in ids]


# ------------------------------------------------------------------------------- KEKs named on a command line
def open_provider(spec: str, what: str) -> KeyProvider:
    """A KEK from the command line: a PEM file (private, or public to wrap only) or an Azure Key
    Vault key id (``https://<vault>.vault.azure.net/keys/<name>[/<version>]``)."""
    if spec.startswith("https://"):
        from .azure.keyvault import AzureKeyVaultProvider  # noqa: PLC0415 - optional backend

        return AzureKeyVaultProvider.from_key_id(spec)
    path = Path(spec).expanduser()
    try:
        head = path.read_bytes()[:200]
    except FileNotFoundError:
        raise KeyProviderError(f"{what} {path} does not exist; create one with 'rqp keygen' or fix the path") from None
    except OSError as exc:
        raise KeyProviderError(f"{what} {path} cannot be read ({exc.strerror}); fix its owner or mode") from None
    if b"PUBLIC KEY" in head:
        return LocalKeyProvider(public_key_file=path)
    return LocalKeyProvider(private_key_file=path)
