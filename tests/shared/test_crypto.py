import os

import pytest

from rqp.crypto import Sealer, aad, decrypt_stream, encrypt_stream, new_data_key
from rqp.errors import IntegrityError


def test_seal_binds_associated_data():
    s = Sealer(new_data_key())
    ct = s.seal(b"secret record", aad("record", "w1", 17))
    assert s.open(ct, aad("record", "w1", 17)) == b"secret record"
    assert b"secret" not in ct
    for wrong in (aad("record", "w1", 18), aad("record", "w2", 17), aad("result", "w1", 17)):
        with pytest.raises(IntegrityError, match="failed authentication"):
            s.open(ct, wrong, "record 17")


def test_seal_detects_bit_flip_and_wrong_key():
    k = new_data_key()
    ct = bytearray(Sealer(k).seal(b"x" * 100, b"a"))
    ct[20] ^= 1
    with pytest.raises(IntegrityError):
        Sealer(k).open(bytes(ct), b"a")
    with pytest.raises(IntegrityError):
        Sealer(new_data_key()).open(Sealer(k).seal(b"x", b"a"), b"a")
    with pytest.raises(IntegrityError, match="truncated"):
        Sealer(k).open(b"short", b"a")


@pytest.mark.parametrize("size", [0, 1, 99, 100, 101, 1000, 12345])
def test_stream_round_trip_any_size(size):
    key = new_data_key()
    data = os.urandom(size)
    pieces = [data[i : i + 37] for i in range(0, len(data), 37)] or [b""]
    ct = b"".join(encrypt_stream(key, pieces, b"ad", segment_size=100))
    chunks = [ct[i : i + 13] for i in range(0, len(ct), 13)]
    assert b"".join(decrypt_stream(key, chunks, b"ad")) == data


def _stream(key, data, seg=100):
    return b"".join(encrypt_stream(key, [data], b"ad", segment_size=seg))


def test_stream_truncation_is_detected_even_at_a_segment_boundary():
    key = new_data_key()
    ct = _stream(key, os.urandom(1000))
    header, seg = 16, 116
    for cut in (len(ct) - 1, header + 3 * seg, header + seg, 10):
        with pytest.raises(IntegrityError):
            b"".join(decrypt_stream(key, [ct[:cut]], b"ad"))


def test_stream_reorder_append_and_other_aad_fail():
    key = new_data_key()
    ct = _stream(key, os.urandom(500))
    header, seg = 16, 116
    body = ct[header:]
    swapped = ct[:header] + body[seg : 2 * seg] + body[:seg] + body[2 * seg :]
    with pytest.raises(IntegrityError):
        b"".join(decrypt_stream(key, [swapped], b"ad"))
    with pytest.raises(IntegrityError):
        b"".join(decrypt_stream(key, [ct + ct[header : header + seg]], b"ad"))
    with pytest.raises(IntegrityError):
        b"".join(decrypt_stream(key, [ct], b"other workload"))
    with pytest.raises(IntegrityError, match="not an rqp encrypted stream"):
        b"".join(decrypt_stream(key, [b"PK\x03\x04" + ct[4:]], b"ad"))
