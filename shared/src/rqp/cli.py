"""``rqp``: the user's command line.

Every failure prints one line, ``rqp: error: <what is wrong and how to fix it>``, and exits with
the error's ``exit_code`` (see ``rqp.errors``).
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import io
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from . import __version__
from .config import Settings
from .connect import (
    connect_redis,
    open_blob_store,
    open_key_provider,
    open_message_queue,
    open_signing_key,
    open_trust_store,
)
from .crypto import aad, decrypt_stream
from .errors import IntegrityError, RqpError, WorkloadError
from .keys import generate_kek
from .ledger import Ledger, submit, workloads
from .messages import open_envelope, peek_workload
from .signing import generate_signing_key
from .status import Progress, read_progress, record_status
from .summary import read_summary
from .workload import Workload, blob_name, new_workload_id, pack

__all__ = ["format_progress", "main", "read_results", "read_summary"]

BAR_WIDTH = 30


# ------------------------------------------------------------------------------- helpers
def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    return Settings.load(
        getattr(args, "config", None),
        redis_url=getattr(args, "redis_url", None),
        blob_url=getattr(args, "blob_url", None),
        kek_file=getattr(args, "kek", None),
        kek_public_file=getattr(args, "public_key", None),
        signing_key_file=getattr(args, "signing_key", None),
        trusted_signers_file=getattr(args, "trusted_signers", None),
        **overrides,
    )


def _open_workload(settings: Settings, workload_id: str, store: Any = None) -> Workload:
    """Open a workload the way the roles do: trusted signature first, then the key."""
    store = store if store is not None else open_blob_store(settings.blob_url)
    return Workload.open(store, open_key_provider(settings), workload_id, open_trust_store(settings))


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = round(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def format_progress(p: Progress) -> str:
    """One glanceable line: bar, percent, counts by state, rate, ETA."""
    total = p.total if p.total is not None else max(p.enqueued, 1)
    frac = min(1.0, p.finished / total) if total else 1.0
    filled = int(frac * BAR_WIDTH)
    bar = "#" * filled + "." * (BAR_WIDTH - filled)
    total_s = f"{p.total:,}" if p.total is not None else f">={p.enqueued:,} (reading)"
    line = (
        f"{p.workload} [{bar}] {frac * 100:5.1f}%  {p.done:,}/{total_s} done  {p.failed:,} failed  "
        f"{p.processing:,} processing  {p.queued:,} queued  {p.retrying:,} retrying  "
        f"{p.rate:,.0f} rec/s  elapsed {_fmt_duration(p.elapsed)}  ETA {_fmt_duration(p.eta if p.state != 'done' else 0)}  [{p.state}]"
    )
    if p.error:
        line += f"  error: {p.error}"
    return line


def read_results(store: Any, workload: Workload) -> Iterator[bytes]:
    """Yield result lines (bytes, JSON) after checking the results blob against the summary."""
    info = read_summary(store, workload).results
    if store.size(info.blob) != info.size:
        raise IntegrityError(
            f"results of workload {workload.id} are {store.size(info.blob)} bytes but the summary says {info.size}: truncated or replaced"
        )
    rest = b""
    digest = hashlib.sha256()

    def hashed() -> Iterator[bytes]:
        for c in store.iter_chunks(info.blob):
            digest.update(c)
            yield c

    for piece in decrypt_stream(
        workload.key, hashed(), aad("results", workload.id), f"results of workload {workload.id}"
    ):
        lines = (rest + piece).split(b"\n")
        rest = lines.pop()
        yield from lines
    if rest:
        yield rest
    if digest.hexdigest() != info.sha256:
        raise IntegrityError(
            f"results of workload {workload.id} do not match the digest in its summary: replaced; re-run 'rqp-scheduler run {workload.id}'"
        )


# ------------------------------------------------------------------------------- commands
def cmd_keygen(args: argparse.Namespace) -> int:
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


def cmd_pack(args: argparse.Namespace) -> int:
    settings = _settings(args)
    store = open_blob_store(settings.blob_url)
    keys = open_key_provider(settings, need_private=False)
    signer = open_signing_key(settings)
    wid = args.id or new_workload_id(Path(args.data).stem)
    total = os.path.getsize(args.data) if os.path.exists(args.data) else 0
    seen = 0
    last = 0.0
    show = sys.stderr.isatty() or args.progress

    def progress(n: int) -> None:
        nonlocal seen, last
        seen += n
        now = time.monotonic()
        if show and (now - last > 0.2 or seen >= total):
            last = now
            pct = 100.0 * seen / total if total else 100.0
            print(
                f"\rpacking {args.data}: {seen / 1e6:,.1f}/{total / 1e6:,.1f} MB ({pct:.0f}%)",
                end="",
                file=sys.stderr,
                flush=True,
            )

    m = pack(
        store,
        keys,
        wid,
        Path(args.data),
        Path(args.script),
        fmt=args.format,
        delimiter=args.delimiter,
        replace=args.replace,
        progress=progress,
        signer=signer,
    )
    if show:
        print(file=sys.stderr)
    if args.submit:
        r = connect_redis(settings)
        submit(r, wid)
    print(wid)
    print(
        f"packed workload {wid}: data {m.data.plain_size:,} bytes -> {m.data.size:,} encrypted, script {m.script.plain_size:,} bytes, KEK {m.kek_id}, signed by {signer.fingerprint}, in {store.location}"
        + (" (submitted)" if args.submit else ""),
        file=sys.stderr,
    )
    return 0


def cmd_signer(args: argparse.Namespace) -> int:
    signer = open_signing_key(_settings(args))
    if args.pem:
        sys.stdout.write(f"# {signer.fingerprint} ({signer.alg})\n" + signer.public_pem().decode())
    else:
        print(f"{signer.fingerprint} {signer.alg}")
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    settings = _settings(args)
    store = open_blob_store(settings.blob_url)
    if not store.exists(blob_name(args.workload, "manifest.json")):
        raise WorkloadError(f"workload {args.workload} not found in {store.location}; pack it first with 'rqp pack'")
    submit(connect_redis(settings), args.workload)
    print(f"submitted {args.workload}; a running 'rqp-scheduler serve' picks it up")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    settings = _settings(args)
    r = connect_redis(settings)
    if args.record is not None:
        workload = _open_workload(settings, args.workload)
        print(json.dumps(asdict(record_status(r, workload, args.record)), indent=1))
        return 0
    while True:
        p = read_progress(r, args.workload)
        if p is None:
            raise WorkloadError(
                f"workload {args.workload} is not known to Redis at {settings.redis_url_safe}; schedule it first (rqp-scheduler run {args.workload})"
            )
        if p.error:
            p.error = _unseal_error(settings, r, args.workload) or p.error
        if args.json:
            print(json.dumps(p.as_dict()))
        elif args.watch and sys.stdout.isatty():
            print("\r" + format_progress(p), end="\x1b[K", flush=True)
        else:
            print(format_progress(p), flush=True)
        if not args.watch or p.state in ("done", "failed"):
            break
        time.sleep(args.interval)
    if args.watch and sys.stdout.isatty():
        print()
    return 0 if p.state != "failed" else 1


def _unseal_error(settings: Settings, r: Any, workload_id: str) -> str | None:
    """The full workload error, when this user holds the KEK; else None (the generic text shows)."""
    sealed = Ledger(r, workload_id).sealed_error()
    if not sealed or not (settings.kek_file or settings.key_vault_key_id):
        return None
    try:
        workload = _open_workload(settings, workload_id)
        return workload.open_sealed("error", "", base64.b64decode(sealed)).decode()
    except (RqpError, ValueError):
        return None


def cmd_list(args: argparse.Namespace) -> int:
    settings = _settings(args)
    r = connect_redis(settings)
    for wid in workloads(r, newest_first=True, limit=args.limit):
        p = read_progress(r, wid)
        if p:
            print(format_progress(p))
    return 0


def cmd_results(args: argparse.Namespace) -> int:
    settings = _settings(args)
    store = open_blob_store(settings.blob_url)
    workload = _open_workload(settings, args.workload, store)
    out = open(args.output, "wb") if args.output else sys.stdout.buffer  # noqa: SIM115 - closed below, unless stdout
    try:
        if args.failed:
            for f in read_summary(store, workload).failures:
                out.write(json.dumps(asdict(f)).encode() + b"\n")
        elif args.format == "csv":
            text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
            writer = csv.writer(text)
            writer.writerow(["id", "result"])
            for line in read_results(store, workload):
                doc = json.loads(line)
                res = doc["result"]
                writer.writerow([doc["id"], res if isinstance(res, str) else json.dumps(res)])
            text.detach()
        else:
            for line in read_results(store, workload):
                out.write(line + b"\n")
    finally:
        if args.output:
            out.close()
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    settings = _settings(args)
    r = connect_redis(settings)
    mq = open_message_queue(settings, r)
    store = open_blob_store(settings.blob_url)
    keys = open_key_provider(settings)
    trust = open_trust_store(settings)
    cache: dict[str, Workload] = {}

    def workload_for(wid: str) -> Workload:
        if wid not in cache:
            cache[wid] = Workload.open(store, keys, wid, trust)
        return cache[wid]

    queue = settings.events_queue if args.queue == "events" else settings.status_queue
    shown = 0
    deadline = time.monotonic() + args.wait
    while True:
        msgs = mq.peek(queue, args.max) if args.peek else mq.receive(queue, args.max, wait=min(1.0, args.wait))
        for m in msgs:
            wid = peek_workload(m.body)
            if args.workload and wid != args.workload:
                continue
            try:
                env = open_envelope(m.body, workload_for, queue)
            except RqpError as exc:
                print(json.dumps({"error": str(exc), "message_id": m.id}), file=sys.stderr)
                if not args.peek:
                    mq.delete(queue, m)
                continue
            items = env.payload if isinstance(env.payload, list) else [env.payload]
            for item in items:
                print(json.dumps(item), flush=True)
                shown += 1
            if not args.peek:
                mq.delete(queue, m)
        if args.peek or (not msgs and (not args.follow and time.monotonic() >= deadline)):
            break
    print(f"{shown} {args.queue} records", file=sys.stderr)
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    from .control import retry_failed  # noqa: PLC0415
    from .control_cli import actor  # noqa: PLC0415

    settings = _settings(args)
    r = connect_redis(settings)
    count = retry_failed(r, args.workload, actor())
    if not count:
        print(f"workload {args.workload} has no failed records")
        return 0
    print(
        f"re-queued {count} failed records of {args.workload}; run 'rqp-scheduler run {args.workload}' (or a serving scheduler picks it up)"
    )
    return 0


# ------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="rqp", description="rqp: encrypted parallel batch processing on Redis and RQ")
    ap.add_argument("--version", action="version", version=f"rqp {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="TOML settings file (default: RQP_CONFIG)")
    common.add_argument("--redis-url", help="default: RQP_REDIS_URL")
    common.add_argument("--blob-url", help="default: RQP_BLOB_URL")
    common.add_argument("--kek", help="private key-encryption key PEM (default: RQP_KEK_FILE)")
    common.add_argument("--trusted-signers", help="submitters' public keys (default: RQP_TRUSTED_SIGNERS_FILE)")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "keygen", help="create an RSA key-encryption key pair, or (--signing) a submitter's Ed25519 signing key"
    )
    p.add_argument("--signing", action="store_true", help="a submitter signing key (default out: keys/signer.pem)")
    p.add_argument("--out", help="private key path (default: keys/kek.pem, or keys/signer.pem with --signing)")
    p.add_argument("--public-out")
    p.add_argument("--bits", type=int, default=3072)
    p.set_defaults(func=cmd_keygen)

    p = sub.add_parser("pack", parents=[common], help="encrypt a data file and a script and upload them as a workload")
    p.add_argument("data")
    p.add_argument("script")
    p.add_argument("--id", help="workload id (default: generated from the data file name)")
    p.add_argument(
        "--format",
        choices=["jsonl", "csv", "script"],
        default="jsonl",
        help="how to split the data into records (script: its parse())",
    )
    p.add_argument("--delimiter", default=",")
    p.add_argument("--public-key", help="public KEK PEM (default: RQP_KEK_PUBLIC_FILE, or the private key)")
    p.add_argument(
        "--signing-key",
        help="your Ed25519 signing key PEM (default: RQP_SIGNING_KEY_FILE, or RQP_SIGNING_KEY_VAULT_ID)",
    )
    p.add_argument("--replace", action="store_true", help="overwrite an existing workload of that id")
    p.add_argument("--submit", action="store_true", help="hand it to a serving scheduler")
    p.add_argument("--progress", action="store_true", help="show progress even when not on a terminal")
    p.set_defaults(func=cmd_pack)

    p = sub.add_parser(
        "signer",
        parents=[common],
        help="the configured signing key: fingerprint, or its public key for a trusted-signers file",
    )
    p.add_argument(
        "--signing-key", help="Ed25519 signing key PEM (default: RQP_SIGNING_KEY_FILE, or RQP_SIGNING_KEY_VAULT_ID)"
    )
    p.add_argument(
        "--pem", action="store_true", help="print the public key (PEM) to append to RQP_TRUSTED_SIGNERS_FILE"
    )
    p.set_defaults(func=cmd_signer)

    p = sub.add_parser("submit", parents=[common], help="hand a packed workload to a serving scheduler")
    p.add_argument("workload")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("status", parents=[common], help="counts by state, throughput and ETA")
    p.add_argument("workload")
    p.add_argument("--watch", action="store_true", help="live progress until the workload ends")
    p.add_argument("--interval", type=float, default=1.0)
    p.add_argument("--json", action="store_true")
    p.add_argument("--record", type=int, help="show one record's decrypted status record")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("list", parents=[common], help="recent workloads")
    p.add_argument("--limit", type=int, default=20)
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("results", parents=[common], help="verify and decrypt a workload's results")
    p.add_argument("workload")
    p.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    p.add_argument("--failed", action="store_true", help="the failed records with their errors instead")
    p.add_argument("--output", "-o")
    p.set_defaults(func=cmd_results)

    p = sub.add_parser("events", parents=[common], help="read the status (default) or events queue")
    p.add_argument("--queue", choices=["status", "events"], default="status")
    p.add_argument("--workload")
    p.add_argument("--peek", action="store_true", help="look without consuming")
    p.add_argument("--follow", "-f", action="store_true")
    p.add_argument("--wait", type=float, default=0.0, help="seconds to wait for messages")
    p.add_argument("--max", type=int, default=32)
    p.set_defaults(func=cmd_events)

    p = sub.add_parser("retry", parents=[common], help="re-queue a workload's failed records")
    p.add_argument("workload")
    p.add_argument("--failed", action="store_true", required=True)
    p.set_defaults(func=cmd_retry)

    from .rotate import add_rotate_command  # noqa: PLC0415

    add_rotate_command(sub)

    from .control_cli import add_control_commands  # noqa: PLC0415

    add_control_commands(sub, common)

    from .redis_acl import add_redis_acl_command  # noqa: PLC0415

    add_redis_acl_command(sub)

    _add_plugin_commands(sub)
    return ap


#: entry-point group through which installed role packages add ``rqp`` sub-commands (each entry
#: is a callable taking the sub-parsers); ``shared`` imports no role
COMMANDS_GROUP = "rqp.commands"


def _add_plugin_commands(sub: Any) -> None:
    from importlib.metadata import entry_points  # noqa: PLC0415 - only when the parser is built

    names = set()
    for ep in entry_points(group=COMMANDS_GROUP):
        try:
            ep.load()(sub)
        except ImportError as exc:  # a half-installed plugin must not break the rest of the CLI
            print(f"rqp: warning: command {ep.name!r} unavailable ({exc})", file=sys.stderr)
            continue
        names.add(ep.name)
    if "metrics" not in names:
        p = sub.add_parser("metrics", help="VM metrics (needs the rqp-metrics-logger package)")
        p.set_defaults(func=lambda _a: _missing_metrics())


def _missing_metrics() -> int:
    print(
        "rqp: error: 'rqp metrics' needs the rqp-metrics-logger package; pip install ./metrics-logger", file=sys.stderr
    )
    return 2


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except RqpError as exc:
        print(f"rqp: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
