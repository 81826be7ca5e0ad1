"""Time the Azure start path of one workload against Azurite: what a worker waits for before its
first chunk (``Workload.open``: manifest, key; the script) and what the scheduler waits for
before its first job (the data's size and first range).

    python bench/profile_open.py [--rounds R] [--baseline SRC_DIR]

One Azurite and one packed workload (~1 MB of data); then child processes, each opening the
workload ``OPENS`` times on one store (connections warm, as in a worker) and printing the
median wall time of each phase. ``--baseline DIR`` alternates children running another copy of
the sources (``DIR/shared/src``... by ``PYTHONPATH``, e.g. main's, from ``git archive``) with
children running this tree's, so load from elsewhere hits both alike.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
#: opens per child process (the first is dropped: it builds the clients)
OPENS = 15
WORKLOAD = "open-bench"


def child(url: str, keys_dir: Path) -> None:
    from rqp.azure.blob import AzureBlobStore
    from rqp.keys import LocalKeyProvider
    from rqp.signing import TrustStore
    from rqp.workload import Workload

    store = AzureBlobStore.from_url(url)
    keys = LocalKeyProvider(private_key_file=keys_dir / "kek.pem")
    trust = TrustStore.from_file(keys_dir / "signer.pub.pem")
    phases: dict[str, list[float]] = {"open": [], "script": [], "first data": [], "worker start": []}
    for _ in range(OPENS + 1):
        t0 = time.perf_counter()
        w = Workload.open(store, keys, WORKLOAD, trust)
        t1 = time.perf_counter()
        w.script_source()
        t2 = time.perf_counter()
        chunks = w.data_chunks()
        next(chunks)
        t3 = time.perf_counter()
        chunks.close()
        for name, value in (("open", t1 - t0), ("script", t2 - t1), ("first data", t3 - t2), ("worker start", t2 - t0)):
            phases[name].append(value)
    print(json.dumps({k: statistics.median(v[1:]) * 1000 for k, v in phases.items()}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--baseline", type=Path, default=None)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]))
        return 0
    sys.path.insert(0, str(REPO / "tests"))
    from azurite import Azurite  # tests/azurite.py: the project's Azurite launcher

    from rqp.azure.blob import AzureBlobStore
    from rqp.keys import LocalKeyProvider, generate_kek
    from rqp.signing import LocalSigningKey, generate_signing_key
    from rqp.workload import pack

    work = Path(tempfile.mkdtemp(prefix="rqp-open-"))
    generate_kek(work / "kek.pem", work / "kek.pub.pem")
    generate_signing_key(work / "signer.pem", work / "signer.pub.pem")
    (work / "d.jsonl").write_bytes(b"".join(b'{"n": %d, "pad": "%s"}\n' % (i, b"x" * 100) for i in range(10_000)))
    (work / "s.py").write_text("def process(r):\n    return r\n")
    azurite = Azurite().start()
    try:
        conn = work / "storage-conn"
        conn.write_text(azurite.connection_string)
        conn.chmod(0o600)
        url = f"azure-blob://devstoreaccount1/rqp-{uuid.uuid4().hex[:12]}?connection_string_file={conn}"
        store = AzureBlobStore.from_url(url)
        store.create_container()
        keys = LocalKeyProvider(public_key_file=work / "kek.pub.pem")
        pack(store, keys, WORKLOAD, work / "d.jsonl", work / "s.py", signer=LocalSigningKey(work / "signer.pem"))
        kinds = ["this tree"] if args.baseline is None else ["baseline", "this tree"]
        results: dict[str, list[dict[str, float]]] = {k: [] for k in kinds}
        for r in range(args.rounds):
            for kind in kinds:
                env = dict(os.environ)
                if kind == "baseline":
                    src = [args.baseline / p / "src" for p in ("shared", "scheduler", "processor")]
                    env["PYTHONPATH"] = os.pathsep.join(str(s) for s in src)
                out = subprocess.run(
                    [sys.executable, __file__, "--child", url, str(work)], env=env, capture_output=True, text=True
                )
                if out.returncode != 0:
                    print(out.stderr, file=sys.stderr)
                    return 1
                results[kind].append(json.loads(out.stdout))
                load = os.getloadavg()[0]
                print(
                    f"round {r + 1} {kind:>9} (load {load:.1f}): "
                    + ", ".join(f"{k} {v:.1f} ms" for k, v in results[kind][-1].items())
                )
        for kind, rows in results.items():
            med = {k: statistics.median(row[k] for row in rows) for k in rows[0]}
            print(f"median of {len(rows)} {kind:>9}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in med.items()))
    finally:
        with contextlib.suppress(RuntimeError):  # a loaded machine can be slow to free its ports
            azurite.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
