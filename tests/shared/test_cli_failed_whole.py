"""Issue 24 item 8: a workload that failed as a whole (its script does not import, its parse()
raises) is described as such -- ``rqp results --failed`` gives the reason instead of "0 records
failed so far (not final)", and with ``--format script`` the count of records read agrees with
the reason's ("0 records read" beside "raised after 1 records" read as a contradiction)."""

from __future__ import annotations

import pytest
from world import cli_env, world  # noqa: F401 - fixtures

from rqp.cli import main
from rqp.errors import ScriptError
from rqp.workload import pack

PARSE_RAISES = (
    "def parse(stream):\n    yield {'n': 1}\n    raise ValueError('bad data at line 2')\n\n"
    "def process(r):\n    return r['n']\n"
)


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_results_failed_of_a_workload_that_failed_to_import(capsys, cli_env, world):  # noqa: F811
    wid = world.pack("broken", [{"n": 1}], "import no_such_module_here\n\ndef process(r):\n    return r\n")
    with pytest.raises(ScriptError):
        world.run(wid)
    code, out, err = _run(capsys, "results", wid, "--failed")
    assert code == 7 and out == "", err
    assert "workload broken failed as a whole, no record failed on its own" in err
    assert "No module named 'no_such_module_here'" in err  # decrypted: this user holds the KEK
    assert "so far" not in err and "not final" not in err


def test_a_parse_that_raises_counts_what_was_read_the_same_way(capsys, cli_env, world, monkeypatch):  # noqa: F811
    monkeypatch.setenv("COLUMNS", "200")
    data, script = world.root / "d.txt", world.root / "s.py"
    data.write_text("one\ntwo\n")
    script.write_text(PARSE_RAISES)
    pack(world.store, world.keys, "parsed", data, script, fmt="script", signer=world.signer.key)
    run = world.run("parsed")
    with pytest.raises(ScriptError, match="raised after 1 records"):
        run.step()
    code, out, _ = _run(capsys, "status", "parsed")
    assert code == 4 and "[failed]" in out and "0 records read" in out, out
    assert "raised after 1 records" in out and "ValueError: bad data at line 2" in out
    assert "(0 records read and queued before it: a chunk is queued once full" in out, out
    code, _, err = _run(capsys, "results", "parsed", "--failed")
    assert code == 7 and "failed as a whole, no record failed on its own" in err
    assert "0 records read and queued before it" in err
