"""``rqp keygen``, ``rqp signer``, ``rqp rotate-key``: the key-encryption key, the
submitter's signing key and the operator key (which signs control requests) -- making them, showing the one in use, and moving workloads to a new KEK
(``rqp.rotate`` does the re-wrapping)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..connect import open_signing_key
from ..errors import ConfigError
from ..keys import KeyProvider, generate_kek
from ..results_signer import open_results_signer
from ..rotate import ALREADY, ROTATED, open_provider, rotate_keys
from ..signing import generate_signing_key
from .context import backends, settings

__all__ = ["DEFAULT_RESULTS_KEY", "add_rotate_command", "cmd_keygen", "cmd_rotate_key", "cmd_signer", "register"]

#: where ``rqp keygen --results`` writes the scheduler's results key
DEFAULT_RESULTS_KEY = "keys/results.pem"
#: a ``--signing`` key written under a name holding this is a results key (as the README's
#: ``rqp keygen --signing --out keys/results.pem`` made it): its hint is the results key's
RESULTS_HINT = "result"


def cmd_keygen(args: argparse.Namespace) -> int:
    if sum((args.signing, args.operator, args.results)) > 1:
        raise ConfigError("rqp keygen: --signing, --results and --operator make different keys; pick one")
    if args.results or (args.signing and args.out and RESULTS_HINT in Path(args.out).name):
        priv = Path(args.out or DEFAULT_RESULTS_KEY)
        pub = Path(args.public_out) if args.public_out else priv.with_name(priv.name.removesuffix(".pem") + ".pub.pem")
        fp = generate_signing_key(priv, pub)
        print(
            f"results key {fp} (Ed25519)\n  private: {priv} (mode 0600; the scheduler's only: RQP_RESULTS_KEY_FILE, "
            f"never on a processor)\n  public:  {pub} (give it to whoever verifies results: "
            f"RQP_TRUSTED_RESULTS_KEYS_FILE (cat {pub} >> trusted_results.pem) or 'rqp verify --signer {pub}'; "
            f"never add it to RQP_TRUSTED_SIGNERS_FILE: its holder could then submit workloads)"
        )
        return 0
    if args.operator:
        priv = Path(args.out or "keys/operator.pem")
        pub = Path(args.public_out) if args.public_out else priv.with_name(priv.name.removesuffix(".pem") + ".pub.pem")
        fp = generate_signing_key(priv, pub)
        print(
            f"operator key {fp} (Ed25519)\n  private: {priv} (mode 0600; the operator's own: RQP_OPERATOR_KEY_FILE)\n"
            f"  public:  {pub} (append it to the trusted-operators file the scheduler, console and CLI read, "
            f"RQP_TRUSTED_OPERATORS_FILE: cat {pub} >> trusted_operators.pem)"
        )
        return 0
    if args.signing:
        priv = Path(args.out or "keys/signer.pem")
        pub = Path(args.public_out) if args.public_out else priv.with_name(priv.name.removesuffix(".pem") + ".pub.pem")
        fp = generate_signing_key(priv, pub)
        print(
            f"submitter signing key {fp} (Ed25519)\n  private: {priv} (mode 0600; keep it with whoever packs: RQP_SIGNING_KEY_FILE or --signing-key)\n"
            f"  public:  {pub} (add it to the roles' RQP_TRUSTED_SIGNERS_FILE: cat {pub} >> trusted_signers.pem)"
        )
        return 0
    priv = Path(args.out or "keys/kek.pem")
    pub = Path(args.public_out) if args.public_out else priv.with_name(priv.name.removesuffix(".pem") + ".pub.pem")
    kid = generate_kek(priv, pub, bits=args.bits)
    print(
        f"key-encryption key {kid}\n  private: {priv} (mode 0600; mount it read-only into scheduler and processors)\n  public:  {pub} (enough to pack)"
    )
    return 0


def cmd_signer(args: argparse.Namespace) -> int:
    if args.results:  # the key results roots are signed with: its public half for readers to trust
        found = open_results_signer(settings(args))
        if found is None:
            raise ConfigError(
                "no results key configured: set RQP_RESULTS_KEY_FILE or RQP_RESULTS_KEY_VAULT_ID (or an operator key)"
            )
        signer = found
    else:
        signer = open_signing_key(settings(args))
    if args.pem:
        sys.stdout.write(f"# {signer.fingerprint} ({signer.alg})\n" + signer.public_pem().decode())
    else:
        print(f"{signer.fingerprint} {signer.alg}")
    return 0


def cmd_rotate_key(args: argparse.Namespace) -> int:
    b = backends(args)
    store = b.blobs
    new = open_provider(args.new_kek, "new key-encryption key file")
    if args.old_kek:
        old: KeyProvider | None = open_provider(args.old_kek, "old key-encryption key file")
    elif b.settings.kek_file or b.settings.key_vault_key_id:
        old = b.keys
    else:
        old = None
    results = rotate_keys(store, old, new, args.workloads or None, trust=b.trust, signer=open_signing_key(b.settings))
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


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """``keygen``, ``signer`` and ``rotate-key`` on ``rqp``'s sub-commands."""
    p = sub.add_parser(
        "keygen",
        help="create an RSA key-encryption key pair, (--signing) a submitter's or (--operator) an operator's Ed25519 key",
    )
    p.add_argument("--signing", action="store_true", help="a submitter signing key (default out: keys/signer.pem)")
    p.add_argument(
        "--results",
        action="store_true",
        help=f"the scheduler's results key that signs results roots (default out: {DEFAULT_RESULTS_KEY})",
    )
    p.add_argument(
        "--operator",
        action="store_true",
        help="an operator key that signs pause, cancel, delete, ... (default out: keys/operator.pem)",
    )
    p.add_argument(
        "--out",
        help="private key path (default: keys/kek.pem, keys/signer.pem with --signing, keys/results.pem with --results, keys/operator.pem with --operator)",
    )
    p.add_argument("--public-out")
    p.add_argument("--bits", type=int, default=3072)
    p.set_defaults(func=cmd_keygen)

    p = sub.add_parser(
        "signer",
        parents=[common],
        help="the configured signing key: fingerprint, or its public key for a trusted-signers file",
    )
    p.add_argument(
        "--signing-key", help="Ed25519 signing key PEM (default: RQP_SIGNING_KEY_FILE, or RQP_SIGNING_KEY_VAULT_ID)"
    )
    p.add_argument(
        "--results",
        action="store_true",
        help="the scheduler's results key instead (RQP_RESULTS_KEY_FILE, RQP_RESULTS_KEY_VAULT_ID, else the operator key)",
    )
    p.add_argument(
        "--pem", action="store_true", help="print the public key (PEM) to append to RQP_TRUSTED_SIGNERS_FILE"
    )
    p.set_defaults(func=cmd_signer)
    add_rotate_command(sub)


def add_rotate_command(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``rotate-key``: it takes only the blob store's and the signer's options of the common ones
    (it needs no Redis)."""
    p = sub.add_parser(
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
