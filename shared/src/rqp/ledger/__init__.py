"""The contract between the roles through Redis, in one home.

Keys (``WorkloadKeys`` and the shared ones), the spelling of every value two roles exchange
(job ids, chunk names, retry members, result-part references, hash fields), the Lua scripts (one
``.lua`` file each, KEYS and ARGV documented in its header) and the typed operations on them
(``Ledger``): the scheduler, the processors, the status code and the CLI never build a key or a
script argument themselves.
"""

from ._codecs import (
    PAIR,
    ChunkKind,
    Control,
    Counters,
    Head,
    JobId,
    Meta,
    PartRef,
    Perf,
    RetryEntry,
    State,
    chunk_name,
    decode_pin,
    encode_pin,
    job_id,
    join_ids,
    join_runs,
    join_spans,
    note_field,
    pack_values,
    parse_job_id,
    parse_note_field,
    unpack_values,
)
from ._fleet import FLEET, FleetHeartbeat, fleet, leave_fleet, register_processor
from ._global import (
    REJECTED_KEEP,
    next_submission,
    record_rejection,
    rejections,
    release_worker,
    submit,
    unfinished,
    workloads,
)
from ._keys import AUDIT, OUTBOX, OUTBOX_TIMES, REJECTED, SUBMISSIONS, WORKLOADS, WorkloadKeys, held_key
from ._ledger import INF, ChunkOutcome, JobRefused, Lease, Ledger, LockHeld, bit_positions
from ._outbox import flush_outbox, outbox_add, outbox_value, publish_outbox
from ._scripts import Scripts

__all__ = [
    "AUDIT",
    "FLEET",
    "INF",
    "OUTBOX",
    "OUTBOX_TIMES",
    "PAIR",
    "REJECTED",
    "REJECTED_KEEP",
    "SUBMISSIONS",
    "WORKLOADS",
    "ChunkKind",
    "ChunkOutcome",
    "Control",
    "Counters",
    "FleetHeartbeat",
    "Head",
    "JobId",
    "JobRefused",
    "Lease",
    "Ledger",
    "LockHeld",
    "Meta",
    "PartRef",
    "Perf",
    "RetryEntry",
    "Scripts",
    "State",
    "WorkloadKeys",
    "bit_positions",
    "chunk_name",
    "decode_pin",
    "encode_pin",
    "fleet",
    "flush_outbox",
    "held_key",
    "job_id",
    "join_ids",
    "join_runs",
    "join_spans",
    "leave_fleet",
    "next_submission",
    "note_field",
    "outbox_add",
    "outbox_value",
    "pack_values",
    "parse_job_id",
    "parse_note_field",
    "publish_outbox",
    "record_rejection",
    "register_processor",
    "rejections",
    "release_worker",
    "submit",
    "unfinished",
    "unpack_values",
    "workloads",
]
