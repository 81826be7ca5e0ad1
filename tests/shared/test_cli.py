"""Bad input through the real ``rqp`` entry point: one line on stderr, a non-zero exit."""

import pytest
from redis_server import free_port

from rqp.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("rqp: error: ")
    return lines[0]


def test_unreachable_redis(capsys, monkeypatch):
    monkeypatch.setenv("RQP_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    code, _, err = run(capsys, "status", "w1")
    line = one_line_error(err)
    assert code == 6
    assert "cannot reach Redis at redis://127.0.0.1:" in line and "start it or fix RQP_REDIS_URL" in line


def test_missing_key(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("RQP_BLOB_URL", str(tmp_path))
    monkeypatch.setenv("RQP_KEK_FILE", str(tmp_path / "absent.pem"))
    (tmp_path / "d.jsonl").write_text("{}\n")
    (tmp_path / "s.py").write_text("def process(r):\n    return r\n")
    code, _, err = run(capsys, "pack", str(tmp_path / "d.jsonl"), str(tmp_path / "s.py"), "--id", "w1")
    assert code == 3
    assert "absent.pem does not exist; create one with 'rqp keygen'" in one_line_error(err)
    monkeypatch.delenv("RQP_KEK_FILE")
    code, _, err = run(capsys, "pack", str(tmp_path / "d.jsonl"), str(tmp_path / "s.py"), "--id", "w1")
    assert code == 2 and "no key-encryption key configured" in one_line_error(err)


def test_wrong_key_and_tampered_blob(capsys, monkeypatch, tmp_path, kek, other_kek, redis_url):
    monkeypatch.setenv("RQP_BLOB_URL", str(tmp_path / "blobs"))
    monkeypatch.setenv("RQP_REDIS_URL", redis_url)
    (tmp_path / "d.jsonl").write_text('{"a": 1}\n')
    (tmp_path / "s.py").write_text("def process(r):\n    return r\n")
    monkeypatch.setenv("RQP_KEK_FILE", str(kek[0]))
    assert run(capsys, "pack", str(tmp_path / "d.jsonl"), str(tmp_path / "s.py"), "--id", "w1")[0] == 0
    monkeypatch.setenv("RQP_KEK_FILE", str(other_kek[0]))
    code, _, err = run(capsys, "results", "w1")
    assert code == 3 and "wrong key: the workload's data key is wrapped under KEK sha256:" in one_line_error(err)
    monkeypatch.setenv("RQP_KEK_FILE", str(kek[0]))
    key_blob = tmp_path / "blobs" / "workloads" / "w1" / "manifest.json"
    key_blob.write_text(key_blob.read_text().replace('"jsonl"', '"csv"'))
    code, _, err = run(capsys, "results", "w1")
    assert code == 4 and "differs from what sha256:" in one_line_error(err)


def test_script_with_syntax_error_is_refused_at_pack(capsys, monkeypatch, tmp_path, kek):
    monkeypatch.setenv("RQP_BLOB_URL", str(tmp_path / "blobs"))
    monkeypatch.setenv("RQP_KEK_FILE", str(kek[0]))
    (tmp_path / "d.jsonl").write_text("{}\n")
    (tmp_path / "s.py").write_text("def process(r)\n    return r\n")
    code, _, err = run(capsys, "pack", str(tmp_path / "d.jsonl"), str(tmp_path / "s.py"), "--id", "w1")
    assert code == 8 and "has a syntax error at line 1" in one_line_error(err)  # ScriptError (README: exit codes)


@pytest.mark.parametrize("bad", ["UPPER", "a/b", "_lead", "x" * 64])
def test_bad_workload_id(capsys, monkeypatch, tmp_path, kek, bad):
    monkeypatch.setenv("RQP_BLOB_URL", str(tmp_path / "blobs"))
    monkeypatch.setenv("RQP_KEK_FILE", str(kek[0]))
    (tmp_path / "d.jsonl").write_text("{}\n")
    (tmp_path / "s.py").write_text("def process(r):\n    return r\n")
    code, _, err = run(capsys, "pack", str(tmp_path / "d.jsonl"), str(tmp_path / "s.py"), "--id", bad)
    assert code == 7 and "invalid workload id" in one_line_error(err)
