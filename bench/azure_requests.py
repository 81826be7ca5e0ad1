"""Count the requests an rqp run makes to Azure Storage (Azurite), by kind, per workload and per chunk.

    python bench/azure_requests.py [N]          # N records (default 40,000), 2 workers, sandbox on

One ``rqp-azure`` round of ``bench/run.py`` (same pack, processors, scheduler and data), with
Azurite's ``--debug`` log on: every request the server saw is one line there, so the count covers
every process (scheduler, workers, the packer) without touching rqp. The debug log costs Azurite
CPU, so this run's rates are not the benchmark's; its request counts are what to compare.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

import azurite  # noqa: E402 - tests/azurite.py: the project's Azurite launcher
import run  # noqa: E402 - bench/run.py: the benchmark's rounds

#: one line per request in Azurite's debug log
_REQUEST = re.compile(r"StorageContextMiddleware: RequestMethod=(\w+) RequestURL=(\S+)")
#: a sub-request of a Blob Batch (its URL names the port; a request on the wire does not)
_SUB_REQUEST = re.compile(r"^https?://[^/]+:\d+/")
#: the part of a blob name that says what it is: workloads/<id>/<kind>...
_BLOB_KIND = re.compile(r"/devstoreaccount1/[^/?]+/workloads/[^/]+/([^/?]+)")


def kind(method: str, url: str) -> str:
    """``GET parts/ (blob)``, ``PUT ?comp=block``, ``POST messages (queue)``: method, what, and the
    operation a query names (block, blocklist, list...)."""
    comp = re.search(r"[?&]comp=(\w+)", url)
    op = f" ?comp={comp.group(1)}" if comp else ""
    m = _BLOB_KIND.search(url)
    if m:
        what = m.group(1)
        what = what + "/" if url.split(what, 1)[1].startswith("/") else re.sub(r"[.-].*", "", what)
        return f"{method} blob {what}{op}"
    if "/messages" in url:
        return f"{method} queue messages{op}"
    return f"{method} {'container' if 'restype=container' in url else 'other'}{op}"


#: a request line's time (Azurite's debug log starts each line with an ISO timestamp)
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z")
#: requests of the start path listed: from the workload's first read until the first part is written
START_LIST_MAX = 40


def print_start(log: Path) -> None:
    """The start path, request by request: from the first read of a manifest or key (the
    scheduler opening the workload; the two are read together) until the first part's PUT (a worker's first commit), with each
    request's time after the first. Which requests wait on which is what overlapping removes."""
    from datetime import datetime

    rows: list[tuple[float, str]] = []
    seen: set[str] = set()
    for line in log.read_text(errors="replace").splitlines():
        m, t = _REQUEST.search(line), _STAMP.search(line)
        if not m or not t or _SUB_REQUEST.search(m.group(2)):
            continue
        what = kind(m.group(1), m.group(2))
        key = line[: t.end()] + m.group(0)
        if key in seen:
            continue
        seen.add(key)
        if not rows and not (m.group(1) == "GET" and ("manifest.json" in m.group(2) or "key.json" in m.group(2))):
            continue  # the packer's uploads
        rows.append((datetime.fromisoformat(t.group(1)).timestamp(), what))
        if what.startswith("PUT blob parts") or len(rows) >= START_LIST_MAX:
            break
    if not rows:
        return
    print("start path (ms after the first manifest or key read):")
    for at, what in rows:
        print(f"  {(at - rows[0][0]) * 1000:8.1f}  {what}")


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else run.RQP_AZURE_N
    work = Path(tempfile.mkdtemp(prefix="rqp-azreq-"))
    log = work / "azurite-debug.log"
    azurite.FLAGS = (*azurite.FLAGS, "--debug", str(log))
    run.compile_sources()
    data = run.Data(n)
    kek = work / "kek.pem"
    env = run.clean_env()
    subprocess.run([str(run.BIN / "rqp"), "keygen", "--out", str(kek)], check=True, capture_output=True, env=env)
    signer = work / "signer.pem"
    subprocess.run(
        [str(run.BIN / "rqp"), "keygen", "--signing", "--out", str(signer)], check=True, capture_output=True, env=env
    )
    rnd = run.rqp_system_round("rqp-azure", n, 2, 0, work, data, kek, azure=True, verify=False)
    counts: Counter[str] = Counter()
    batched: set[tuple[str, str]] = set()
    for line in log.read_text(errors="replace").splitlines():
        m = _REQUEST.search(line)
        if not m:
            continue
        if _SUB_REQUEST.search(m.group(2)):
            batched.add((m.group(1), m.group(2)))  # logged more than once; not a round trip
        else:
            counts[kind(m.group(1), m.group(2))] += 1
    chunks = max(1, rnd["chunks"])
    total = sum(counts.values())
    print(
        f"{n:,} records, {rnd['chunks']} chunks ({rnd['records_per_chunk']} records/chunk): {total} requests, "
        f"{total / n * 1000:.2f} per 1,000 records"
    )
    print(f"{'request':<44}{'count':>8}{'per chunk':>11}")
    for what, c in counts.most_common():
        print(f"{what:<44}{c:>8}{c / chunks:>11.2f}")
    inside = Counter(kind(method, url) for method, url in batched)
    for what, c in inside.most_common():
        print(f"  inside Blob Batch requests: {what:<30}{c:>6}")
    print(f"CPU µs/record: {rnd['cpu_us_per_record']}")
    print_start(log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
