"""Generate a sample workload: N transaction records as JSON Lines (about 1 KB each); the demo
checks every result against ``expected``.

python examples/make_data.py                    # 10,000 records into data.jsonl
python examples/make_data.py 200000 big.jsonl   # N records into a file of your choice
"""

import argparse
import hashlib
import json
import random


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


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="write N sample transaction records (JSON Lines) for rqp pack")
    ap.add_argument("records", nargs="?", type=int, default=10_000, help="how many records (default 10000)")
    ap.add_argument("out", nargs="?", default="data.jsonl", help="the file to write (default data.jsonl)")
    args = ap.parse_args(argv)
    if args.records < 0:
        ap.error(f"records must not be negative, got {args.records}")
    rng = random.Random(20261124)
    with open(args.out, "w") as fh:
        for i in range(args.records):
            fh.write(json.dumps(record(i, rng)) + "\n")
    print(f"wrote {args.records:,} records to {args.out}; pack them with: rqp pack {args.out} examples/process.py")


if __name__ == "__main__":
    main()
