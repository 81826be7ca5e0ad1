"""``rqp rotate-key``: re-wrap workloads' data keys under a new key-encryption key.

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

import argparse
import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import BlobNotFoundError, IntegrityError, KeyProviderError, RqpError, WorkloadError, WrongKeyError
from .keys import KeyProvider, LocalKeyProvider, WrappedKey
from .signing import SigningKey, TrustStore
from .storage import BlobStore
from .workload import Manifest, blob_name, check_workload_id, verify_signature

__all__ = [
    "RotationResult",
    "add_rotate_command",
    "cmd_rotate_key",
    "list_workloads",
    "main",
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


# ------------------------------------------------------------------------------- command
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


def cmd_rotate_key(args: argparse.Namespace) -> int:
    from .config import Settings  # noqa: PLC0415 - keep this module light to import
    from .connect import open_blob_store, open_key_provider, open_signing_key, open_trust_store  # noqa: PLC0415

    settings = Settings.load(
        getattr(args, "config", None),
        blob_url=getattr(args, "blob_url", None),
        signing_key_file=getattr(args, "signing_key", None),
        trusted_signers_file=getattr(args, "trusted_signers", None),
    )
    store = open_blob_store(settings.blob_url)
    new = open_provider(args.new_kek, "new key-encryption key file")
    if args.old_kek:
        old: KeyProvider | None = open_provider(args.old_kek, "old key-encryption key file")
    elif settings.kek_file or settings.key_vault_key_id:
        old = open_key_provider(settings)
    else:
        old = None
    results = rotate_keys(
        store, old, new, args.workloads or None, trust=open_trust_store(settings), signer=open_signing_key(settings)
    )
    if not results:
        print(f"no workloads in {store.location}; nothing to rotate", file=sys.stderr)
        return 0
    for res in results:
        print(res.line(), flush=True)
    failed = [r for r in results if not r.ok]
    rotated = sum(r.status == ROTATED for r in results)
    already = sum(r.status == ALREADY for r in results)
    summary = f"rotate-key: {rotated} rotated, {already} already under {new.kek_id}, {len(failed)} failed, in {store.location}"
    if failed:
        print(summary + "; fix the errors above and run it again before revoking the old KEK", file=sys.stderr)
        return 1
    print(summary + "; the old KEK is no longer needed by these workloads", file=sys.stderr)
    return 0


def add_rotate_command(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``rotate-key`` on ``rqp``'s subcommands (``build_parser`` calls this)."""
    p = subparsers.add_parser(
        "rotate-key",
        help="re-wrap workloads' data keys under a new key-encryption key (data is not re-encrypted)",
        description=(
            "Re-wrap the data key of every workload in the blob store (or of the named ones) under a new "
            "key-encryption key and re-sign their manifests with your (trusted) signing key. Data, scripts and "
            "results are not touched. "
            "Idempotent: run it again after an interruption. Afterwards point RQP_KEK_FILE at the new key "
            "and revoke the old one."
        ),
    )
    p.add_argument(
        "workloads", nargs="*", metavar="WORKLOAD", help="workload ids (default: every workload in the blob store)"
    )
    p.add_argument(
        "--new-kek", required=True, metavar="NEW.pem", help="new KEK: private or public PEM, or a Key Vault key id"
    )
    p.add_argument(
        "--old-kek", metavar="OLD.pem", help="current KEK: private PEM or Key Vault key id (default: RQP_KEK_FILE)"
    )
    p.add_argument(
        "--signing-key",
        metavar="SIGNER.pem",
        help="your signing key, trusted by the roles (default: RQP_SIGNING_KEY_FILE)",
    )
    p.add_argument(
        "--trusted-signers", metavar="FILE", help="the roles' trusted signers (default: RQP_TRUSTED_SIGNERS_FILE)"
    )
    p.add_argument("--config", help="TOML settings file (default: RQP_CONFIG)")
    p.add_argument("--blob-url", help="default: RQP_BLOB_URL")
    p.set_defaults(func=cmd_rotate_key)
    return p


def main(argv: list[str] | None = None) -> int:
    """``python -m rqp.rotate``: the same command on its own."""
    ap = argparse.ArgumentParser(prog="rqp")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    add_rotate_command(sub)
    args = ap.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except RqpError as exc:
        print(f"rqp: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
