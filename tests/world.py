"""An in-process world for the scheduler and processor tests: a real Redis, a blob directory,
real keys, a signed workload -- the roles' objects built directly, no subprocess."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rqp.config import Settings
from rqp.keys import LocalKeyProvider
from rqp.storage import FileBlobStore, RedisMessageQueue
from rqp.workload import pack


@dataclass
class World:
    root: Path
    settings: Settings
    r: Any
    store: FileBlobStore
    keys: LocalKeyProvider
    signer: Any

    def pack(self, wid: str, records: list[Any], script: str = "def process(r):\n    return r['n'] * 2\n") -> str:
        data = self.root / f"{wid}.jsonl"
        data.write_text("".join(json.dumps(x) + "\n" for x in records))
        (self.root / f"{wid}.py").write_text(script)
        pack(self.store, self.keys, wid, data, self.root / f"{wid}.py", signer=self.signer.key)
        return wid

    def mq(self) -> RedisMessageQueue:
        return RedisMessageQueue(self.r)


@pytest.fixture
def world(tmp_path, r, redis_url, kek, signer) -> World:
    settings = Settings.from_mapping(
        {
            "redis_url": redis_url,
            "blob_url": f"file://{tmp_path / 'blobs'}",
            "kek_file": str(kek[0]),
            "trusted_signers_file": str(signer.trusted),
            "allow_insecure_redis": True,
            "chunk_size": 4,
            "adaptive_chunks": False,
            "window_chunks": 3,
            "max_attempts": 2,
            "retry_backoff": 0.0,
            "retry_backoff_max": 0.0,
            "lease_seconds": 5,
            "record_timeout": 5,
        }
    )
    return World(
        tmp_path, settings, r, FileBlobStore(tmp_path / "blobs"), LocalKeyProvider(private_key_file=kek[0]), signer
    )
