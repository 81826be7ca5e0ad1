"""What the CLI tests share: run ``rqp`` in process, read its one-line error, point it at the
test Redis and blob directory (``env``), and run a workload to its summary (``finish``)."""

from __future__ import annotations

import pytest

from rqp.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("rqp: error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def env(monkeypatch, tmp_path, redis_url, kek):
    """The CLI pointed at the test Redis, a blob directory under ``tmp_path`` (the world's) and
    the KEK, run from ``tmp_path``."""
    monkeypatch.setenv("RQP_REDIS_URL", redis_url)
    monkeypatch.setenv("RQP_BLOB_URL", f"file://{tmp_path / 'blobs'}")
    monkeypatch.setenv("RQP_KEK_FILE", str(kek[0]))
    monkeypatch.setenv("RQP_ALLOW_INSECURE_REDIS", "true")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def finish(world, wid: str) -> None:
    """Schedule ``wid`` and run every chunk in process to its summary."""
    run_, proc = world.run(wid), world.processor()
    try:
        world.run_to_end(run_, proc)
    finally:
        proc.pool.close()
