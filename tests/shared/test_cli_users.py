"""What a user types at ``rqp`` (issue 24, items 2, 5, 6, 11, 13, 14), through the real entry
point, a real Redis and a real blob directory: typo'd ids refused without a write, priorities
shown, ages that are not the epoch's, ``pack --submit`` with Redis down, a CSV packed as JSON
Lines, records named by their own keys, and results as CSV columns."""

from __future__ import annotations

import csv
import io
import json
import re
import shlex
import socket
from pathlib import Path

import pytest
from cli_helpers import finish, one_line_error, run
from world import world  # noqa: F401 - a fixture

from rqp.errors import ScriptError
from rqp.status import read_progress

OK_SCRIPT = "def process(r):\n    return r['n'] * 2\n"


def blobs(root: Path) -> list[str]:
    where = root / "blobs"
    return sorted(str(p.relative_to(where)) for p in where.rglob("*")) if where.exists() else []


def redis_dump(r) -> dict[bytes, object]:
    """Every key of the test Redis with its value: what a command wrote shows as a difference."""
    out: dict[bytes, object] = {}
    for key in r.scan_iter(count=1000):
        kind = r.type(key)
        out[key] = {
            b"string": r.get,
            b"hash": r.hgetall,
            b"list": lambda k: r.lrange(k, 0, -1),
            b"set": r.smembers,
            b"zset": lambda k: r.zrange(k, 0, -1, withscores=True),
            b"stream": r.xrange,
        }[kind](key)
    return out


# ---------------------------------------------------------------------------------- item 2: typo'd ids write nothing
@pytest.mark.parametrize(
    "argv",
    [
        ["delete", "dmeo", "--yes"],
        ["delete", "dmeo", "--yes", "--shred"],
        ["priority", "zzztypo", "low"],
        ["priority", "zzztypo"],
        ["pause", "zzztypo"],
        ["resume", "zzztypo"],
        ["cancel", "zzztypo"],
        ["retry", "zzztypo", "--failed"],
    ],
)
def test_an_action_on_an_unknown_workload_is_refused_and_writes_nothing(capsys, env, world, r, argv):  # noqa: F811
    """A typo'd id: exit 7, one line naming the id and 'rqp list', and no Redis key, audit
    entry, tombstone, priority or blob written -- so 'rqp status' does not say it was deleted."""
    finish(world, world.pack("demo", [{"n": i} for i in range(3)]))  # a real workload beside the typo
    before, files = redis_dump(r), blobs(env)
    code, out, err = run(capsys, *argv)
    line = one_line_error(err)
    assert code == 7 and out == "", (out, err)
    assert f"workload {argv[1]} is not known" in line and "rqp list" in line, line
    assert redis_dump(r) == before
    assert blobs(env) == files
    code, _, err = run(capsys, "status", argv[1])
    assert code == 7 and "was deleted" not in err and "not known to Redis" in err, err


def test_priority_with_no_level_shows_the_current_one(capsys, env, world, r):  # noqa: F811
    """`rqp priority W` shows what `rqp:priorities` holds (the scheduler's word), for a packed
    workload and a finished one, and writes nothing."""
    world.pack("later", [{"n": 1}])
    assert run(capsys, "priority", "later")[1] == "workload later: priority normal\n"
    assert run(capsys, "priority", "later", "high")[0] == 0
    before = redis_dump(r)
    code, out, err = run(capsys, "priority", "later")
    assert (code, out) == (0, "workload later: priority high\n"), err
    assert redis_dump(r) == before
    finish(world, world.pack("over", [{"n": 1}]))
    assert (
        run(capsys, "priority", "over")[1]
        == "workload over: priority normal (it is done; its priority no longer matters)\n"
    )


def test_delete_refuses_a_running_workload_before_asking_for_its_id(capsys, env, world, monkeypatch):  # noqa: F811
    """On a terminal, `rqp delete W` of a running workload says 'cancel it first' at once: it
    never asks the user to type the id only to refuse afterwards."""
    wid = world.pack("busy", [{"n": i} for i in range(12)])
    world.run(wid)  # started: its first chunks are queued
    asked: list[str] = []
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt="": asked.append(prompt) or wid)
    code, _, err = run(capsys, "delete", wid)
    line = one_line_error(err)
    assert code == 7 and f"workload {wid} is running; cancel it first ('rqp cancel {wid}')" in line, line
    assert asked == []
    code, _, err = run(capsys, "delete", "nosuch")
    assert code == 7 and "workload nosuch is not known" in err and asked == [], err


# ---------------------------------------------------------------------------------- items 5, 6: rqp list
def list_rows(out: str) -> dict[str, dict[str, str]]:
    """`rqp list`'s table by id and column (cells are two or more spaces apart)."""
    header, *rows = out.splitlines()
    names = header.split()
    cells = [re.split(r"\s{2,}", row.strip()) for row in rows if row and row[0] != "("]
    return {row[0]: dict(zip(names, row, strict=True)) for row in cells}


def test_list_shows_each_workloads_priority(capsys, env, world, r):  # noqa: F811
    """The PRIORITY column says what `rqp:priorities` holds: for one running, one only packed, and
    one never given a priority (normal)."""
    world.pack("urgent", [{"n": i} for i in range(8)])
    assert run(capsys, "priority", "urgent", "high")[0] == 0
    world.run("urgent")
    world.pack("later", [{"n": 1}])
    assert run(capsys, "priority", "later", "low")[0] == 0
    world.pack("plain", [{"n": 1}])
    code, out, err = run(capsys, "list")
    rows = list_rows(out)
    assert code == 0, err
    assert {wid: (row["STATE"], row["PRIORITY"]) for wid, row in rows.items()} == {
        "urgent": ("running", "high"),
        "later": ("packed", "low"),
        "plain": ("packed", "normal"),
    }


def test_list_age_of_a_workload_that_failed_at_import_is_not_from_the_epoch(capsys, env, world, r):  # noqa: F811
    """A workload whose script does not load fails before it starts (no start time): its AGE is
    from when it failed, seconds ago -- not ~20,000 days -- and it sorts as the newest."""
    world.pack("older", [{"n": 1}])
    wid = world.pack("broken", [{"n": 1}], "import no_such_module_anywhere\ndef process(r):\n    return r\n")
    with pytest.raises(ScriptError, match="failed to import"):
        world.run(wid)  # the scheduler marks it failed, then says why

    p = read_progress(r, wid)
    assert p is not None and p.state == "failed" and p.started_at is None, p
    code, out, err = run(capsys, "list")
    assert code == 0, err
    rows = list_rows(out)
    assert rows[wid]["STATE"] == "failed" and rows[wid]["AGE"].endswith("s") and "d" not in rows[wid]["AGE"], out
    assert list(rows) == [wid, "older"], out


# ---------------------------------------------------------------------------------- item 11: pack --submit, CSV as JSON Lines
def unused_redis_url() -> str:
    """A Redis URL on a port nothing listens on: Redis is down."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


def data_files(root: Path, n: int = 3) -> tuple[Path, Path]:
    data, script = root / "d.jsonl", root / "s.py"
    data.write_text("".join(json.dumps({"n": i}) + "\n" for i in range(n)))
    script.write_text(OK_SCRIPT)
    return data, script


def test_pack_submit_with_redis_down_says_to_submit_once_it_is_back(capsys, env, r, monkeypatch, redis_url):
    """The upload succeeds, the submit cannot: the error says the blobs are uploaded and to run
    'rqp submit W' when Redis is back -- and so does a rerun of the same pack, rather than only
    "already exists; pass --replace". Once Redis is back, that command hands it over."""
    data, script = data_files(env)
    monkeypatch.setenv("RQP_REDIS_URL", unused_redis_url())
    for attempt in range(2):
        code, out, err = run(capsys, "pack", str(data), str(script), "--id", "m1", "--submit", "--priority", "high")
        line = one_line_error(err)
        assert code == 6 and out == "", (attempt, out, err)
        assert "workload m1 is packed" in line and "cannot reach Redis" in line, line
        assert "run 'rqp submit m1 --priority high' when Redis is back" in line, line
        assert (env / "blobs" / "workloads" / "m1" / "manifest.json").exists()
    code, out, err = run(capsys, "pack", str(data), str(script), "--id", "m1")
    line = one_line_error(err)  # a packer that did not ask for Redis is not told about it
    assert code == 7 and "already exists" in line and "'rqp submit m1' hands it to a scheduler" in line, line
    assert "Redis" not in line, line
    monkeypatch.setenv("RQP_REDIS_URL", redis_url)
    code, out, err = run(capsys, "pack", str(data), str(script), "--id", "m1", "--submit")
    line = one_line_error(err)  # Redis back, never submitted: the same way on
    assert code == 7 and "was never submitted" in line and "run 'rqp submit m1'" in line, line
    code, out, err = run(capsys, "submit", "m1", "--priority", "high")
    assert code == 0 and "submitted m1" in out, err
    assert r.lrange("rqp:submissions", 0, -1) == [b"m1"] and r.hget("rqp:priorities", "m1") == b"high"
    code, out, err = run(capsys, "pack", str(data), str(script), "--id", "m1", "--submit")
    line = one_line_error(err)  # submitted now: only another id or --replace
    assert code == 7 and "already exists" in line and "rqp submit" not in line, line


@pytest.mark.parametrize(
    "text, flag",
    [
        ("account,amount,when\nA-1,12.50,2026-01-02\nA-2,7,2026-01-03\n", "--format csv"),
        ("\ufeffaccount;amount\nA-1;12.50\n", "--format csv --delimiter ';'"),
        ("account\tamount\nA-1\t12.50\n", "--format csv --delimiter \"$(printf '\\t')\""),
    ],
)
def test_pack_of_a_csv_file_as_json_lines_fails_at_once_with_the_flag(capsys, env, text, flag):
    """A CSV file packed without --format csv: refused before anything is uploaded, with the
    flags that read it (every record would otherwise fail, and only after the run)."""
    data, script = env / "sales.csv", env / "s.py"
    data.write_text(text)
    script.write_text(OK_SCRIPT)
    code, out, err = run(capsys, "pack", str(data), str(script), "--id", "sales")
    line = one_line_error(err)
    assert code == 2 and out == "", err
    assert line.endswith(f"pack it with {flag}") and "looks like CSV, not JSON Lines" in line, line
    assert blobs(env) == []
    code, _, err = run(
        capsys, "pack", str(data), str(script), "--id", "sales", *shlex.split(flag.replace("$(printf '\\t')", "\t"))
    )
    assert code == 0, err  # the flags it named read the file


def test_an_explicit_format_jsonl_on_csv_data_only_warns(capsys, env):
    """Who says --format jsonl means it: the pack goes on, with the warning on stderr."""
    data, script = env / "sales.csv", env / "s.py"
    data.write_text("account,amount\nA-1,12.50\n")
    script.write_text(OK_SCRIPT)
    code, out, err = run(capsys, "pack", str(data), str(script), "--id", "sales", "--format", "jsonl")
    assert code == 0 and out == "sales\n", err
    assert "rqp: warning: " in err and "looks like CSV" in err and "as --format jsonl says" in err, err


def test_json_lines_and_unusual_data_are_not_taken_for_csv(capsys, env):
    """JSON Lines (a first record of any JSON type), and a first line that is not JSON but not a
    CSV header either, pack as before: the check only stops what is plainly CSV."""
    script = env / "s.py"
    script.write_text(OK_SCRIPT)
    for i, text in enumerate(['{"n": 1}\n{"n": 2}\n', "\n[1, 2]\n", '"a,b"\n"c,d"\n', "just text\nmore text\n"]):
        data = env / f"d{i}.jsonl"
        data.write_text(text)
        code, _, err = run(capsys, "pack", str(data), str(script), "--id", f"j{i}")
        assert code == 0, (text, err)


# ---------------------------------------------------------------------------------- item 13: a record by its own key
KEYED_SCRIPT = "def process(r):\n    if r['n'] == 3:\n        raise ValueError('negative amount')\n    return {'tx': r['tx'], 'double': r['n'] * 2}\n"


def pack_keyed(world, wid: str, n: int = 8) -> str:  # noqa: F811 - the fixture's value
    """A workload packed with --id-field tx: record i's key is TX-00000i; record 3 fails."""
    from rqp.workload import pack

    data, script = world.root / f"{wid}.jsonl", world.root / f"{wid}.py"
    data.write_text("".join(json.dumps({"tx": f"TX-{i:07d}", "n": i}) + "\n" for i in range(n)))
    script.write_text(KEYED_SCRIPT)
    pack(world.store, world.keys, wid, data, script, signer=world.signer.key, id_field="tx")
    return wid


def test_status_record_takes_a_key_and_the_terminal_view_shows_it(capsys, env, world, r, monkeypatch):  # noqa: F811
    """`rqp status W --record TX-0000005` is record 5 (not "invalid int value"), done or failed;
    on a terminal the record's key is shown; once the chunk notes are gone from Redis the key is
    still found in the workload's sealed results."""
    wid = pack_keyed(world, "keyed")
    finish(world, wid)
    code, out, err = run(capsys, "status", wid, "--record", "TX-0000005", "--json")
    assert code == 0, err
    assert (json.loads(out)["id"], json.loads(out)["key"], json.loads(out)["state"]) == (5, "TX-0000005", "done")
    code, out, err = run(capsys, "status", wid, "--record", "TX-0000003", "--json")
    assert code == 0 and json.loads(out)["id"] == 3 and json.loads(out)["state"] == "failed", err
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    code, out, err = run(capsys, "status", wid, "--record", "TX-0000003")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "record 3: failed (attempt 2)" and lines[2].split() == ["key", "TX-0000003"], out
    assert run(capsys, "status", wid, "--record", "6")[1].splitlines()[2].split() == ["key", "TX-0000006"]
    r.delete(f"rqp:w:{wid}:notes")  # as when the notes expired: the sealed results still know the key
    code, out, err = run(capsys, "status", wid, "--record", "TX-0000007", "--json")
    line = one_line_error(err)  # found as record 7, whose status went with its note
    assert code == 7 and f"record 7 of workload {wid} is done but its chunk's note has expired" in line, line


def test_status_record_of_an_unknown_key_names_what_works(capsys, env, world):  # noqa: F811
    wid = pack_keyed(world, "keyed")
    finish(world, wid)
    code, _, err = run(capsys, "status", wid, "--record", "TX-9999999")
    line = one_line_error(err)
    assert code == 7 and "has no done or failed record whose tx is 'TX-9999999'" in line, line
    plain = world.pack("plain", [{"n": 1}])
    finish(world, plain)
    code, _, err = run(capsys, "status", plain, "--record", "TX-1")
    line = one_line_error(err)
    assert code == 7 and "packed without --id-field" in line and "--record 0" in line, line
    code, _, err = run(capsys, "status", plain, "--record", "-1")
    assert code == 7 and "there is no record -1" in one_line_error(err)


# ---------------------------------------------------------------------------------- item 14: output formats
MIXED_SCRIPT = (
    "def process(r):\n"
    "    n = r['n']\n"
    "    if n == 4:\n"
    "        raise ValueError('four')\n"
    "    if n == 5:\n"
    "        return [n, 'x']\n"
    "    if n == 6:\n"
    "        return 'six, said plainly'\n"
    "    out = {'double': n * 2, 'label': f'item {n}', 'ok': n % 2 == 0}\n"
    "    if n == 2:\n"
    "        out['note'] = None\n"
    "        out['id'] = 'own id'\n"
    "    return out\n"
)


def test_results_as_csv_spread_flat_objects_over_columns(capsys, env, world):  # noqa: F811
    """Flat-object results: one column per key, the record id first, values as cells (not one
    JSON string per row); a result that is not a flat object is a JSON cell of its own; a result
    key named like a fixed column keeps its value."""
    wid = world.pack("mixed", [{"n": i} for i in range(7)], MIXED_SCRIPT)
    finish(world, wid)
    code, out, err = run(capsys, "results", wid, "--format", "csv")
    assert code == 0, err
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["id", "double", "label", "ok", "note", "result.id", "result"], rows
    by_id = {row[0]: dict(zip(rows[0], row, strict=True)) for row in rows[1:]}
    assert set(by_id) == {"0", "1", "2", "3", "5", "6"}  # the failed record is in --failed
    assert by_id["1"] == {
        "id": "1",
        "double": "2",
        "label": "item 1",
        "ok": "false",
        "note": "",
        "result.id": "",
        "result": "",
    }
    assert (by_id["2"]["note"], by_id["2"]["result.id"], by_id["2"]["ok"]) == ("", "own id", "true")
    assert by_id["5"]["result"] == '[5,"x"]' and by_id["5"]["double"] == ""
    assert by_id["6"]["result"] == "six, said plainly"


def test_results_csv_of_scalars_and_of_keyed_records(capsys, env, world):  # noqa: F811
    """No flat objects: the one `result` column as before; --id-field: the key second."""
    wid = world.pack("scalars", [{"n": i} for i in range(3)])
    finish(world, wid)
    rows = list(csv.reader(io.StringIO(run(capsys, "results", wid, "--format", "csv")[1])))
    assert rows == [["id", "result"], ["0", "0"], ["1", "2"], ["2", "4"]]
    keyed = pack_keyed(world, "keyed", 5)
    finish(world, keyed)
    rows = list(csv.reader(io.StringIO(run(capsys, "results", keyed, "--format", "csv")[1])))
    assert rows[0] == ["id", "key", "tx", "double"], rows
    assert rows[1] == ["0", "TX-0000000", "TX-0000000", "0"] and len(rows) == 5  # record 3 failed


def test_failed_records_print_compact_json_like_the_results(capsys, env, world):  # noqa: F811
    wid = world.pack("fails", [{"n": i} for i in range(7)], MIXED_SCRIPT)
    finish(world, wid)
    code, out, err = run(capsys, "results", wid, "--failed")
    assert code == 0, err
    (line,) = out.splitlines()
    assert line.startswith('{"id":4,"error":"') and ", " not in line.split('"error"')[0] and '": ' not in line, line
    assert json.loads(line)["attempts"] == 2
    results = run(capsys, "results", wid)[1].splitlines()
    assert results[0].startswith('{"id":0,') and '": ' not in results[0], results  # the same style


def test_list_with_its_priority_column_fits_80_columns(capsys, env, world, monkeypatch):  # noqa: F811
    """On an 80-column terminal the wider table still fits, PRIORITY kept (PROGRESS goes first)."""
    long_id = "sales-2026-q3-eu-west-hourly-rollup-20261202-072154-ab12"
    finish(world, world.pack(long_id, [{"n": i} for i in range(5)]))
    world.pack("short", [{"n": 1}])
    assert run(capsys, "priority", "short", "high")[0] == 0
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    monkeypatch.setenv("COLUMNS", "80")
    code, out, err = run(capsys, "list")
    lines = out.splitlines()
    assert code == 0 and all(len(line) < 80 for line in lines), (out, err)
    rows = list_rows(out)
    assert rows["short"]["PRIORITY"] == "high" and "PRIORITY" in lines[0], out
