"""Generate a sample workload: N transaction records as JSON Lines, and the expected results.

python examples/make_data.py 10000 data.jsonl
"""

import hashlib
import json
import random
import sys


def record(i: int, rng: random.Random) -> dict:
    return {
        "id": i,
        "account": f"ACC-{rng.randrange(10**8):08d}",
        "amount": round(rng.uniform(0, 1000), 2),
        "memo": "x" * rng.randrange(600, 900),  # records of about 1 KB
    }


def expected(rec: dict) -> dict:
    """What examples/process.py must return for ``rec``: the demo checks every result against it."""
    amount = float(rec["amount"])
    return {
        "account_hash": hashlib.sha256(rec["account"].encode()).hexdigest()[:12],
        "amount_cents": round(amount * 100),
        "flagged": amount > 900,
    }


def main() -> None:
    n = int(sys.argv[1])
    out = sys.argv[2]
    rng = random.Random(20261124)
    with open(out, "w") as fh:
        for i in range(n):
            fh.write(json.dumps(record(i, rng)) + "\n")


if __name__ == "__main__":
    main()
