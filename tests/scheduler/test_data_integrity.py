"""A tampered or truncated ``data.enc`` through the real programs: the scheduler fails the
workload for all to see, prints its one-line reason once, and exits with the integrity code;
``rqp status`` and ``rqp list`` show it failed, with the reason."""

from __future__ import annotations

import json

import pytest

from rqp.errors import IntegrityError


def _flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])


@pytest.mark.parametrize(
    "damage, reason",
    [
        (_flip_a_byte, "data of workload {w} failed authentication at segment 0"),
        (_truncate, "data of workload {w} is {size} bytes but the manifest says {full}: truncated or replaced"),
    ],
)
def test_damaged_data_fails_the_workload_once_with_exit_code_4(cluster, damage, reason):
    wid = f"damaged-{damage.__name__.strip('_').replace('_', '-')}"
    data = cluster.write_data(f"{wid}.jsonl", [{"n": i, "pad": "x" * 64} for i in range(500)])
    script = cluster.write_script(f"{wid}.py", "def process(r):\n    return r['n']\n")
    cluster.pack(wid, data, script)
    blob = cluster.root / "blobs" / "workloads" / wid / "data.enc"
    full = blob.stat().st_size
    damage(blob)
    expected = reason.format(w=wid, size=blob.stat().st_size, full=full)

    code, out = cluster.schedule(wid)
    assert code == IntegrityError.exit_code == 4, out
    assert out.count(expected) == 1, out  # printed once, not logged and printed again
    [line] = [ln for ln in out.splitlines() if "error" in ln.lower()]
    assert line.startswith(f"rqp-scheduler: error: workload {wid}: {expected}"), out
    assert "Traceback" not in out

    st = cluster.rqp("status", wid, "--json", check=False)
    assert st.returncode == 4  # rqp status: failed as a whole
    doc = json.loads(st.stdout)
    assert doc["state"] == "failed" and expected in doc["error"]
    text = cluster.rqp("status", wid, check=False).stdout.decode()
    assert f"{wid}  [failed]" in text and expected in " ".join(text.split())
    listed = cluster.rqp("list").stdout.decode().splitlines()
    assert [row.split()[1] for row in listed if row.startswith(wid)] == ["failed"]
