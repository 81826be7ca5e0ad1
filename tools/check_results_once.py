"""Every record of a test-vms workload exactly once, with its expected result.

Usage: ``python3 tools/check_results_once.py RESULTS.jsonl N`` where RESULTS is what ``rqp results``
printed for a workload made by ``write_workload_inputs`` (tools/lib-vms.sh): record ``n`` must
come back once as ``{"n": n, "v": n * 7919 mod 1000003}``. Prints one line of counts; exit 1 when
a record is lost, doubled or wrong. Standard library only: it runs on the host, outside the venv.
"""

from __future__ import annotations

import collections
import json
import sys


def main(path: str, n: int) -> int:
    ids: collections.Counter[int] = collections.Counter()
    wrong = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            ids[d["id"]] += 1
            if d["result"] != {"n": d["id"], "v": (d["id"] * 7919) % 1000003}:
                wrong.append(d["id"])
    dup = [i for i, c in ids.items() if c > 1]
    lost = [i for i in range(n) if i not in ids]
    print(
        f"    results: {sum(ids.values())} lines, {len(ids)} records, {len(lost)} lost, {len(dup)} duplicated, {len(wrong)} wrong"
    )
    return 0 if not lost and not dup and not wrong and len(ids) == n else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2])))
