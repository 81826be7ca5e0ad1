"""The results root's pass alone: CPU µs per record of ``build_root``, optionally under cProfile.

    python bench/profile_root.py [N] [--profile] [--rounds R]

Packs ``N`` records of the benchmark's data (``examples/make_data.py``, 100,000 by default) into a
temporary file blob store, writes the results object ``consolidate`` would write for them (each
record's result from ``examples/process.py``, as a worker encodes it), then times
``rqp.results_root.build_root`` over them: the input digests (the data read and parsed again,
one HMAC per record), the Merkle leaves (the results decrypted, each result's canonical digest)
and the tree. No Redis, no workers: the figure is the root's own, without the noise of a whole
run -- what ``make bench`` shows as the scheduler's ``results root`` phase.

Both ways the scheduler builds it are timed: **from the data** (a run that restarted, or a
``rqp retry`` round: the data read, decrypted, split and HMACed again) and **from the enqueue's
digests** (the usual run: ``rqp_scheduler.input_pieces``, stored as the enqueue read the records
-- their cost is the enqueue's, not counted here; reading them back and checking their tags is).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "examples"))
sys.path.insert(0, str(REPO / "tests"))

#: records packed when no count is given
DEFAULT_RECORDS = 100_000
#: records per piece of input digests (``rqp_scheduler.run.enqueue.ENQUEUE_BATCH_RECORDS``)
ENQUEUE_BATCH = 4096
#: result lines per block handed to the results' encryption (one chunk's, as consolidation does)
CHUNK_RECORDS = 1024


class Packed:
    """``n`` records packed into ``directory`` with their results object, as consolidation leaves
    them before the root's pass."""

    def __init__(self, n: int, directory: Path) -> None:
        import make_data  # type: ignore[import-not-found]
        import process  # type: ignore[import-not-found]
        from harness import make_signer  # type: ignore[import-not-found]

        from rqp.crypto import aad, encrypt_stream
        from rqp.jsonsafe import dumps
        from rqp.keys import LocalKeyProvider, generate_kek
        from rqp.signing import LocalSigningKey, TrustStore
        from rqp.storage import FileBlobStore
        from rqp.workload import Workload, blob_name, pack

        d = directory
        generate_kek(d / "kek.pem", d / "kek.pub.pem")
        key, trusted = make_signer(d / "signer")
        rng = random.Random(20261124)
        records = [make_data.record(i, rng) for i in range(n)]
        data = d / "data.jsonl"
        data.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in records))
        self.n = n
        self.store = FileBlobStore(d / "blobs")
        self.signer = LocalSigningKey(key)
        pack(self.store, LocalKeyProvider(public_key_file=d / "kek.pub.pem"), "root", data,
             REPO / "examples" / "process.py", signer=self.signer)  # fmt: skip
        self.workload = Workload.open(
            self.store, LocalKeyProvider(private_key_file=d / "kek.pem"), "root", TrustStore.from_file(trusted)
        )
        lines = [b'{"id":%d,"result":%s}\n' % (i, dumps(process.process(r)).encode()) for i, r in enumerate(records)]
        self.results = blob_name("root", "results.enc")
        #: the result lines in blocks of a chunk's records, as consolidation hands them on
        self.blocks = [b"".join(lines[i : i + CHUNK_RECORDS]) for i in range(0, n, CHUNK_RECORDS)]
        self.store.put_stream(
            self.results, encrypt_stream(self.workload.key, iter([b"".join(lines)]), aad("results", "root"))
        )

    def payloads(self) -> Iterator[bytes]:
        """The records' bytes as the enqueue parses them."""
        from rqp.records import parse_records

        recs = parse_records("jsonl", self.workload.data_chunks(), workload_id="root")
        return (payload for payload, _why in recs)

    def build(self, build_root: Callable[..., Any] | None = None) -> Any:
        """The attestation ``build_root`` (``rqp.results_root``'s unless another is given) makes."""
        if build_root is None:
            from rqp.results_root import build_root
        return build_root(self.store, self.workload, self.payloads(), self.results, [], self.n, self.signer)

    def store_pieces(self) -> Any:
        """The input digests stored as the enqueue stores them (``PIECE_RECORDS`` per piece)."""
        from rqp_scheduler.input_pieces import InputPieces

        pieces = InputPieces(self.store, self.workload)
        batch: list[bytes] = []
        first = 0
        for payload in self.payloads():
            batch.append(payload)
            if len(batch) == ENQUEUE_BATCH:
                piece = pieces.add(first, pieces.digests(first, batch))
                if piece is not None:
                    pieces.write(*piece)
                first, batch = first + len(batch), []
        pieces.add(first, pieces.digests(first, batch))
        pieces.flush()
        return pieces

    def _write(self, blocks: Iterator[bytes]) -> str:
        """The results object written as ``consolidate.write_results`` writes it (staged name):
        encrypted, hashed on the way out; its SHA-256."""
        import hashlib

        from rqp.crypto import aad, encrypt_stream
        from rqp.results_root import STAGED_SUFFIX

        digest = hashlib.sha256()

        def hashed(chunks: Iterator[bytes]) -> Iterator[bytes]:
            for c in chunks:
                digest.update(c)
                yield c

        self.store.put_stream(
            self.results + STAGED_SUFFIX, hashed(encrypt_stream(self.workload.key, blocks, aad("results", "root")))
        )
        return digest.hexdigest()

    def write_then_read_back(self, pieces: Any) -> Any:
        """Consolidation's write, then the root from the staged object read back (two passes)."""
        from rqp.results_root import STAGED_SUFFIX, build_root

        sha = self._write(iter(self.blocks))
        plan = pieces.plan(self.n)
        return build_root(
            self.store, self.workload, (), self.results + STAGED_SUFFIX, [], self.n, self.signer, staged=True,
            inputs=pieces.read(plan, self.n), results_sha256=sha,
        )  # fmt: skip

    def write_in_one_pass(self, pieces: Any) -> Any:
        """Consolidation's write with the root's leaves made on the way (``RootWhileWriting``)."""
        from rqp.results_root import STAGED_SUFFIX, UNRECORDED_ROUND, RootWhileWriting

        rw = RootWhileWriting(
            self.store, self.workload, (), [], self.n, inputs=pieces.read(pieces.plan(self.n), self.n)
        )
        sha = self._write(rw.lines(iter(self.blocks)))
        return rw.finish(self.results + STAGED_SUFFIX, sha, UNRECORDED_ROUND, self.signer)

    def build_from_pieces(self, pieces: Any) -> Any:
        """The attestation from the enqueue's stored digests (the data not read)."""
        from rqp.results_root import build_root

        plan = pieces.plan(self.n)
        assert plan is not None, "the pieces do not cover every record"
        return build_root(
            self.store, self.workload, (), self.results, [], self.n, self.signer, inputs=pieces.read(plan, self.n)
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("n", nargs="?", type=int, default=DEFAULT_RECORDS)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--profile", action="store_true", help="one more pass under cProfile (CPU clock), by own time")
    args = ap.parse_args(argv)
    n = args.n
    with tempfile.TemporaryDirectory(prefix="rqp-root-") as tmp:
        packed = Packed(n, Path(tmp))
        pieces = packed.store_pieces()
        ways: dict[str, Callable[[], Any]] = {
            "from the data": packed.build,
            "from the enqueue's digests": lambda: packed.build_from_pieces(pieces),
            "write + read back (two passes)": lambda: packed.write_then_read_back(pieces),
            "write + leaves (one pass)": lambda: packed.write_in_one_pass(pieces),
        }
        times: dict[str, list[float]] = {way: [] for way in ways}
        root = None
        for _ in range(args.rounds):
            for way, build in ways.items():  # interleaved: load from elsewhere lands on both
                c0 = time.process_time()
                att = build()
                times[way].append((time.process_time() - c0) / n * 1e6)
                assert root is None or att.root == root, "the root differs between rounds or ways"
                root = att.root
        for way, spent in times.items():
            print(
                f"build_root {way}, {n:,} records: {statistics.median(spent):.2f} µs/record CPU "
                f"(median of {args.rounds}: {', '.join(f'{t:.2f}' for t in spent)})"
            )
        if args.profile:
            prof = cProfile.Profile(time.process_time)
            prof.enable()
            packed.write_in_one_pass(pieces)
            prof.disable()
            s = io.StringIO()
            pstats.Stats(prof, stream=s).strip_dirs().sort_stats("tottime").print_stats(20)
            print(s.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
