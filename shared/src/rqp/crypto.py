"""Authenticated encryption for everything rqp stores or sends.

Two formats, both AES-256-GCM with the caller's identity bound in as associated data (AAD):

* **Sealed values** (records, results, status records, job specs, messages):
  ``nonce(12) || ciphertext || tag(16)``. The AAD names the purpose, the workload and the item
  (``rqp/record|W|17``), so a ciphertext copied to another record or workload fails to open.

* **Streams** (workload data, scripts, consolidated results) of any size, encrypted in segments
  so that neither side needs the whole plaintext in memory. Header
  ``b"RQPS" || version(1) || segment_size(u32) || nonce_prefix(7)``; segment *i* is sealed with
  nonce ``prefix || u32(i) || final(1)`` and AAD ``aad || u32(i) || final``. Reordering,
  dropping, truncating at a segment boundary or appending segments all fail authentication
  (the construction is the "STREAM" online AE of Hoang, Reyhanitabar, Rogaway and Vizár).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections.abc import Iterable, Iterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import IntegrityError

__all__ = [
    "DEFAULT_SEGMENT_SIZE",
    "KEY_SIZE",
    "NONCE_SIZE",
    "TAG_SIZE",
    "Sealer",
    "aad",
    "decrypt_stream",
    "derive_key",
    "encrypt_stream",
    "mac",
    "new_data_key",
    "scope_key",
    "verify_mac",
]

KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
DEFAULT_SEGMENT_SIZE = 1 << 20
STREAM_MAGIC = b"RQPS"
STREAM_VERSION = 1
_STREAM_HEADER = struct.Struct(">4sBI7s")
_SEG = struct.Struct(">IB")


def new_data_key() -> bytes:
    """A fresh random AES-256 key: one per workload."""
    return AESGCM.generate_key(bit_length=256)


def aad(*parts: object) -> bytes:
    """Associated data from parts: ``aad("record", w, 17) == b"rqp/record|w|17"``."""
    return ("rqp/" + "|".join(map(str, parts))).encode()


def derive_key(key: bytes, purpose: str) -> bytes:
    """A subkey for a non-AEAD purpose (the manifest MAC), so the data key is never reused raw."""
    return hmac.new(key, b"rqp-subkey/" + purpose.encode(), hashlib.sha256).digest()


def scope_key(key: bytes, workload_id: str, scope: str) -> bytes:
    """The AES key for one scope of a workload (a chunk's records, one job's results).

    Sealed values use random 96-bit nonces, which keeps nonce collisions negligible only while
    one key seals fewer than about 2**32 values. Records and results -- the values that grow
    with the data -- are sealed under a key per chunk or per job, derived with HKDF-SHA256 from
    the data key, so no key comes near that bound whatever the workload's size; the data key
    itself seals a few values per chunk and per failed attempt."""
    info = b"rqp-scope/1|" + workload_id.encode() + b"|" + scope.encode()
    return HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=None, info=info).derive(key)


def mac(key: bytes, data: bytes) -> str:
    return hmac.new(derive_key(key, "mac"), data, hashlib.sha256).hexdigest()


def verify_mac(key: bytes, data: bytes, tag: str, what: str) -> None:
    if not hmac.compare_digest(mac(key, data), tag):
        raise IntegrityError(
            f"{what} failed its integrity check: it was modified after packing or belongs to another "
            f"workload; re-pack the workload with 'rqp pack'"
        )


class Sealer:
    """AES-256-GCM for small values with explicit AAD. One per (process, data key)."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_SIZE:
            raise ValueError("an AES-256 key is 32 bytes")
        self._aead = AESGCM(key)

    @property
    def aead(self) -> AESGCM:
        """The cipher, for callers that seal in bulk (``Workload.seal_packed``)."""
        return self._aead

    def seal(self, plaintext: bytes, associated: bytes) -> bytes:
        nonce = os.urandom(NONCE_SIZE)
        return nonce + self._aead.encrypt(nonce, plaintext, associated)

    def open(self, sealed: bytes, associated: bytes, what: str = "value") -> bytes:
        if sealed is None or len(sealed) < NONCE_SIZE + TAG_SIZE:
            raise IntegrityError(f"{what} is truncated or missing; it cannot be decrypted")
        try:
            return self._aead.decrypt(sealed[:NONCE_SIZE], sealed[NONCE_SIZE:], associated)
        except InvalidTag:
            raise IntegrityError(
                f"{what} failed authentication: tampered with, moved from another record or "
                f"workload, or encrypted under a different key"
            ) from None


def encrypt_stream(
    key: bytes,
    chunks: Iterable[bytes],
    associated: bytes,
    segment_size: int = DEFAULT_SEGMENT_SIZE,
) -> Iterator[bytes]:
    """Encrypt an iterable of plaintext pieces of any sizes; yields ciphertext pieces."""
    aead = AESGCM(key)
    prefix = os.urandom(7)
    yield _STREAM_HEADER.pack(STREAM_MAGIC, STREAM_VERSION, segment_size, prefix)
    buf = bytearray()
    index = 0
    pending: bytes | None = None  # hold one full segment back to know which one is final

    def seal(segment: bytes, final: bool) -> bytes:
        tail = _SEG.pack(index, 1 if final else 0)
        return aead.encrypt(prefix + tail, segment, associated + tail)

    for piece in chunks:
        buf += piece
        while len(buf) >= segment_size:
            if pending is not None:
                yield seal(pending, False)
                index += 1
            pending = bytes(buf[:segment_size])
            del buf[:segment_size]
    if pending is not None:
        if buf:
            yield seal(pending, False)
            index += 1
            yield seal(bytes(buf), True)
        else:
            yield seal(pending, True)
    else:
        yield seal(bytes(buf), True)


def decrypt_stream(key: bytes, chunks: Iterable[bytes], associated: bytes, what: str = "stream") -> Iterator[bytes]:
    """Decrypt what ``encrypt_stream`` produced, yielding plaintext segment by segment.

    Raises ``IntegrityError`` on any modification, including truncation, before yielding the
    segment that is wrong; callers that must not act on a partial plaintext buffer the output
    or check the manifest digest first.
    """
    aead = AESGCM(key)
    it = iter(chunks)
    buf = bytearray()
    for piece in it:
        buf += piece
        if len(buf) >= _STREAM_HEADER.size:
            break
    if len(buf) < _STREAM_HEADER.size:
        raise IntegrityError(f"{what} is truncated: it has no complete header")
    magic, version, segment_size, prefix = _STREAM_HEADER.unpack_from(buf)
    if magic != STREAM_MAGIC or version != STREAM_VERSION or segment_size <= 0:
        raise IntegrityError(f"{what} is not an rqp encrypted stream (bad header)")
    del buf[: _STREAM_HEADER.size]
    seg_ct = segment_size + TAG_SIZE
    index = 0
    exhausted = False
    while True:
        while len(buf) <= seg_ct and not exhausted:
            try:
                buf += next(it)
            except StopIteration:
                exhausted = True
        final = exhausted and len(buf) <= seg_ct
        take = len(buf) if final else seg_ct
        segment = bytes(buf[:take])
        del buf[:take]
        tail = _SEG.pack(index, 1 if final else 0)
        try:
            yield aead.decrypt(prefix + tail, segment, associated + tail)
        except InvalidTag:
            raise IntegrityError(
                f"{what} failed authentication at segment {index}: tampered with, truncated, "
                f"or encrypted under another key or workload"
            ) from None
        if final:
            return
        index += 1
