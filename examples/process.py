"""Example rqp processing script: score a transaction record.

rqp calls process(record) once per record, in parallel across processors; the return value
(any JSON value) is encrypted and stored as that record's result. An exception fails just that
record (it is retried, then reported with its message).
"""

import hashlib


def process(record):
    amount = float(record["amount"])
    if amount < 0:
        raise ValueError(f"negative amount {amount}")
    digest = hashlib.sha256(record["account"].encode()).hexdigest()[:12]
    return {"account_hash": digest, "amount_cents": round(amount * 100), "flagged": amount > 900}
