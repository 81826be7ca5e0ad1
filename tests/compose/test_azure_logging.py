"""The Azure SDK's HTTP logging stays out of the roles' logs (issue 16): its ``azure`` loggers log
WARNING and up unless ``RQP_LOG_LEVEL=DEBUG``. Checked in a fresh interpreter, as a role starts:
logging configured at INFO, then a real blob store on Azurite written and read."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from azurite import DEV_ACCOUNT  # tests/ is on sys.path (tests/conftest.py)

ROLE = textwrap.dedent(
    """
    import logging, os, sys, uuid
    logging.basicConfig(level=os.environ["RQP_LOG_LEVEL"], stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    from rqp.connect import open_blob_store
    store = open_blob_store(sys.argv[1])
    store.create_container()
    store.put("probe/" + uuid.uuid4().hex, b"x" * 10)
    print(sorted(store.list("probe/"))[:1])
    """
)


def run_role(azurite, tmp_path, level: str) -> str:
    conn = tmp_path / "azure_conn"
    conn.write_text(azurite.connection_string)
    conn.chmod(0o600)
    url = f"azure-blob://{DEV_ACCOUNT}/logging-{level.lower()}?connection_string_file={conn}"
    env = {**os.environ, "RQP_LOG_LEVEL": level}
    done = subprocess.run(
        [sys.executable, "-c", ROLE, url], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "probe/" in done.stdout, done.stdout  # the store was really used
    return done.stderr


@pytest.mark.parametrize("level", ["INFO", "WARNING"])
def test_the_sdk_logs_no_http_traffic_at_info(azurite, tmp_path, level):
    err = run_role(azurite, tmp_path, level)
    assert "Request URL" not in err and "Response status" not in err, err
    assert " azure." not in err, err


def test_debug_shows_the_sdk_http_traffic(azurite, tmp_path):
    """The check above could fail: at DEBUG the same calls do log their requests."""
    err = run_role(azurite, tmp_path, "DEBUG")
    assert "Request URL" in err, err[-2000:]
