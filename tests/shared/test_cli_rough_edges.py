"""The rough edges a new user met (issue 18) and the terminal's (issue 17), through the real
``rqp`` entry point, a real Redis and a real blob directory: flags over the environment, one-line
errors, results and progress that say what is true, ``rqp list`` and ``rqp status`` for a person
and for a script."""

from __future__ import annotations

import csv
import io
import itertools
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import finish, one_line_error, run
from harness import bin_path
from pty_terminal import PtyCommand
from world import world  # noqa: F401 - a fixture

from rqp import errors
from rqp.cli import FINISHED_STATES, format_progress, format_status, main
from rqp.config import DEFAULT_BLOB_URL, Settings, default_blob_url
from rqp.keys import LocalKeyProvider
from rqp.ledger import DRAINED_SECONDS, Ledger, Meta, State
from rqp.messages import pack_messages
from rqp.oplog import read_audit
from rqp.records import JSONL_PROBE, parse_records
from rqp.status import Progress, StatusRecord, read_progress
from rqp.storage import RedisMessageQueue
from rqp.vms import VmLabel, record_vm

ROOT = Path(__file__).resolve().parents[2]
OK_SCRIPT = "def process(r):\n    return r['n'] * 2\n"
SOME_FAIL = "def process(r):\n    if r['n'] % 5 == 1:\n        raise ValueError('odd one')\n    return r['n']\n"


def files(tmp_path: Path) -> tuple[Path, Path]:
    data, script = tmp_path / "d.jsonl", tmp_path / "s.py"
    data.write_text("".join(json.dumps({"n": i}) + "\n" for i in range(3)))
    script.write_text(OK_SCRIPT)
    return data, script


def manifest_kek(tmp_path: Path, wid: str) -> str:
    return json.loads((tmp_path / "blobs" / "workloads" / wid / "manifest.json").read_text())["kek_id"]


# ---------------------------------------------------------------------------------- bug 2, 12: keys for pack
def test_public_key_flag_beats_the_kek_file_in_the_environment(capsys, env, kek, other_kek):
    data, script = files(env)
    code, _, err = run(capsys, "pack", str(data), str(script), "--id", "w1", "--public-key", str(other_kek[1]))
    assert code == 0, err
    assert manifest_kek(env, "w1") == LocalKeyProvider(public_key_file=other_kek[1]).kek_id
    # and with no flag, the environment's key, as before
    assert run(capsys, "pack", str(data), str(script), "--id", "w2")[0] == 0
    assert manifest_kek(env, "w2") == LocalKeyProvider(private_key_file=kek[0]).kek_id


def test_settings_know_where_each_value_came_from(tmp_path):
    f = tmp_path / "rqp.toml"
    f.write_text('kek_public_file = "/from/file.pem"\n')
    s = Settings.load(f, env={"RQP_KEK_FILE": "/from/env.pem"}, kek_public_file="/from/flag.pem")
    assert (s.source("kek_public_file"), s.source("kek_file"), s.source("chunk_size")) == ("flag", "env", "default")
    assert s.rank("kek_public_file") > s.rank("kek_file") > s.rank("chunk_size")


def test_pack_with_no_key_names_the_flag_and_uses_the_key_keygen_wrote(capsys, env, monkeypatch, kek):
    monkeypatch.delenv("RQP_KEK_FILE")
    data, script = files(env)
    code, _, err = run(capsys, "pack", str(data), str(script), "--id", "w1")
    line = one_line_error(err)
    assert code == 2 and "--public-key" in line and "rqp keygen" in line
    (env / "keys").mkdir()
    (env / "keys" / "kek.pub.pem").write_bytes(kek[1].read_bytes())  # where 'rqp keygen' writes it
    code, _, err = run(capsys, "pack", str(data), str(script), "--id", "w1")
    assert code == 0, err
    assert "using keys/kek.pub.pem" in err
    assert manifest_kek(env, "w1") == LocalKeyProvider(public_key_file=kek[1]).kek_id


def test_keygen_writes_where_pack_looks(capsys, env, monkeypatch):
    monkeypatch.delenv("RQP_KEK_FILE")
    assert run(capsys, "keygen")[0] == 0
    data, script = files(env)
    code, _, err = run(capsys, "pack", str(data), str(script), "--id", "w1")
    assert code == 0, err
    assert manifest_kek(env, "w1") == LocalKeyProvider(public_key_file=env / "keys" / "kek.pub.pem").kek_id


# ---------------------------------------------------------------------------------- bug 4: one line, no traceback
@pytest.mark.parametrize(
    "url, says",
    [
        ("redis://127.0.0.1:16379x/0", "is not a valid URL"),
        ("redis://127.0.0.1:99999/0", "is not a valid URL"),
        ("redis://:::", "is not a valid URL"),
        ("redis://[::1/0", "is not a valid URL"),
        ("redis://127.0.0.1:0/0", "port 0 is not between 1 and 65535"),
        ("redis://127.0.0.1:6379/x", "the database 'x' after the port must be a number"),
        ("redis:///0", "names no host"),
    ],
)
def test_a_malformed_redis_url_is_one_line(capsys, monkeypatch, url, says):
    monkeypatch.setenv("RQP_REDIS_URL", url)
    code, _, err = run(capsys, "status", "w1")
    line = one_line_error(err)
    assert code == 2 and says in line and "RQP_REDIS_URL" in line and "redis://HOST:PORT/DB" in line


def test_a_malformed_url_does_not_show_its_password(capsys, monkeypatch):
    monkeypatch.setenv("RQP_REDIS_URL", "redis://u:hunter2@127.0.0.1:99x/0")
    code, _, err = run(capsys, "status", "w1")
    assert code == 2 and "hunter2" not in one_line_error(err) and "u:***@" in err


def test_a_negative_record_id_is_one_line(capsys, env, world):  # noqa: F811
    world.pack("w1", [{"n": 1}])
    code, _, err = run(capsys, "status", "w1", "--record", "-1")
    assert code == 7 and "there is no record -1: record ids are the records' 0-based numbers" in one_line_error(err)


# ---------------------------------------------------------------------------------- bug 5, 7: results
def test_failed_records_as_csv(capsys, env, world):  # noqa: F811
    wid = world.pack("fails", [{"n": i} for i in range(10)], SOME_FAIL)
    finish(world, wid)
    code, out, err = run(capsys, "results", wid, "--failed", "--format", "csv")
    assert code == 0, err
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["id", "attempts", "error"]
    assert [int(r[0]) for r in rows[1:]] == [1, 6]
    assert all(r[1] == "2" and "ValueError: odd one" in r[2] for r in rows[1:])
    # JSON lines stay the default
    code, out, _ = run(capsys, "results", wid, "--failed")
    assert [json.loads(x)["id"] for x in out.splitlines()] == [1, 6]


def test_results_of_an_unfinished_workload_say_how_far_it_is(capsys, env, world):  # noqa: F811
    wid = world.pack("half", [{"n": i} for i in range(30)])
    code, _, err = run(capsys, "results", wid)
    assert code == 7 and "it is packed but was never scheduled; run 'rqp-scheduler run half'" in one_line_error(err)
    world.run(wid).step()  # 3 chunks of 4 queued, the data not read to its end
    code, _, err = run(capsys, "results", wid)
    line = one_line_error(err)
    assert code == 7
    assert "workload half is not finished yet (running: 0 done and 0 failed of at least 12" in line
    assert "'rqp status half --watch'" in line and "summary.enc" not in line


# ---------------------------------------------------------------------------------- bug 8: events --peek
def test_peek_looks_through_the_whole_queue(capsys, env, world, r):  # noqa: F811
    """A workload's messages behind 40 of another's are found, and nothing is consumed."""
    from rqp.workload import Workload

    for wid in ("first", "mine"):
        world.pack(wid, [{"n": 1}])
    opened = {w: Workload.open(world.store, world.keys, w, world.trust()) for w in ("first", "mine")}
    mq = RedisMessageQueue(r)
    queue = world.settings.status_queue
    for wid, count in (("first", 40), ("mine", 3)):
        for i in range(count):  # one message per record, as a processor's commit would publish them
            status = StatusRecord(wid, i, "failed", 1, "x").to_json()
            [(_mid, body)] = pack_messages(opened[wid], queue, "status", [status], mq.max_message_bytes)
            mq.send(queue, body)
    code, out, err = run(capsys, "events", "--workload", "mine", "--peek", "--max", "16")
    assert code == 0, err
    assert [json.loads(x)["id"] for x in out.splitlines()] == [0, 1, 2], err
    assert "3 status records" in err
    assert mq.length(queue) == 43  # peeked, not consumed


# ---------------------------------------------------------------------------------- bug 9: progress
def progress(**kw) -> Progress:
    base = dict(
        workload="w1", state="running", total=1000, enqueued=1000, done=100, failed=10, processing=64,
        retrying=5, started_at=1.0, finished_at=None, processed_seconds=1.0,
    )  # fmt: skip
    return Progress(**{**base, **kw})


def test_queued_counts_neither_finished_nor_processing_nor_retrying_records():
    p = progress()
    assert p.queued == 1000 - 100 - 10 - 64 - 5
    assert "821 queued" in " ".join(format_status(p, 200))


def test_while_the_data_is_read_there_is_no_percentage_of_what_is_queued_so_far():
    p = progress(total=None, enqueued=300, done=290, failed=0, processing=0, retrying=0)
    for text in (format_progress(p), "\n".join(format_status(p, 79))):
        assert "reading data: 300 records so far" in text
        assert "%" not in text and "ETA --:--" in text


def test_the_rate_is_of_the_time_processors_worked_not_since_the_start(capsys, env, world, r):  # noqa: F811
    """A workload started an hour before any processor came: its rate is the records processed
    over the time from the first chunk's start to the last commit (commit.lua's perf fields)."""
    wid = world.pack("idle", [{"n": i} for i in range(20)])
    run_, proc = world.run(wid), world.processor()
    started = float(run_.ledger.meta()[Meta.STARTED_AT])
    r.hset(f"rqp:w:{wid}:meta", Meta.STARTED_AT, started - 3600)  # nobody came for an hour
    try:
        world.run_to_end(run_, proc)
    finally:
        proc.pool.close()
    perf = {k.decode(): float(v) for k, v in r.hgetall(f"rqp:w:{wid}:perf").items()}
    assert perf["first"] <= perf["last"] and perf["records"] == 20
    p = read_progress(r, wid)
    assert p.elapsed > 3600
    assert p.rate == pytest.approx(20 / (perf["last"] - perf["first"]))
    assert p.rate > 1  # averaged over the hour, it would be 20 / 3600
    _code, out, _ = run(capsys, "status", wid, "--json")
    assert json.loads(out)["rate"] == pytest.approx(p.rate, rel=0.01)


# ---------------------------------------------------------------------------------- bug 10: the exit-code table
EXIT_CLASSES = {
    2: (errors.ConfigError, "config"),
    3: (errors.KeyProviderError, "key"),
    4: (errors.IntegrityError, "integrity"),
    5: (errors.StorageError, "storage"),
    6: (errors.RedisUnavailableError, "redis"),
    7: (errors.WorkloadError, "workload"),
    8: (errors.ScriptError, "script"),
    11: (errors.RoundUncheckedError, "round"),
}


def readme_table(title: str) -> dict[int, str]:
    """The rows ``| code | meaning |`` of the README table after the line starting ``title``."""
    text = (ROOT / "README.md").read_text()
    rest = text[text.index(title) :]
    rows = {}
    for line in rest.splitlines()[1:]:
        if rows and not line.startswith("|"):
            break
        m = re.match(r"\|\s*(\d+)\s*\|\s*([^|]+)\|", line)
        if m:
            rows[int(m.group(1))] = m.group(2).strip().lower()
    return rows


def test_the_readme_exit_codes_are_the_errors_codes():
    table = readme_table("| exit code | kind of error |")
    for code, (cls, word) in EXIT_CLASSES.items():
        assert cls.exit_code == code and word in table[code], (code, table.get(code))


def test_each_exit_code_row(capsys, env, monkeypatch, world, kek, other_kek, tmp_path):  # noqa: F811
    data, script = files(env)
    seen = {}
    bad_script = env / "bad.py"
    bad_script.write_text("def process(r)\n    return r\n")
    seen[8] = run(capsys, "pack", str(data), str(bad_script), "--id", "s1")
    seen[7] = run(capsys, "status", "nosuch")
    world.pack("w1", [{"n": 1}])
    monkeypatch.setenv("RQP_KEK_FILE", str(other_kek[0]))
    seen[3] = run(capsys, "results", "w1")
    monkeypatch.setenv("RQP_KEK_FILE", str(kek[0]))
    manifest = env / "blobs" / "workloads" / "w1" / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"jsonl"', '"csv"'))
    seen[4] = run(capsys, "results", "w1")
    (env / "a-file").write_text("")
    monkeypatch.setenv("RQP_BLOB_URL", f"file://{env / 'a-file' / 'blobs'}")
    seen[5] = run(capsys, "pack", str(data), str(script), "--id", "s2")
    monkeypatch.setenv("RQP_REDIS_URL", "redis://127.0.0.1:1/0")
    seen[6] = run(capsys, "status", "w1")
    monkeypatch.setenv("RQP_CHUNK_SIZE", "none")
    seen[2] = run(capsys, "status", "w1")
    for code, (got, _out, err) in seen.items():
        one_line_error(err)
        assert got == code, (code, err)


# ---------------------------------------------------------------------------------- bug 12: smaller
def test_list_says_when_there_is_nothing(capsys, env):
    code, out, _ = run(capsys, "list")
    assert code == 0 and out.startswith("no workloads")


@pytest.mark.parametrize(
    "source, fmt, says",
    [
        ("def handle(r):\n    return r\n", "jsonl", "defines no process(record) function at its top level"),
        ("def process(r):\n    return r\n", "script", "defines no parse(stream) function, which --format script needs"),
        ("class X:\n    def process(self, r):\n        return r\n", "jsonl", "defines no process(record)"),
        ("def process(r)\n    return r\n", "jsonl", "has a syntax error at line 1"),
        ("def process(r):\n    return r\nreturn 1\n", "jsonl", "'return' outside function"),
    ],
)
def test_a_script_without_its_functions_is_refused_at_pack(capsys, env, source, fmt, says):
    data, script = files(env)
    script.write_text(source)
    code, _, err = run(capsys, "pack", str(data), str(script), "--id", "w1", "--format", fmt)
    assert code == 8 and says in one_line_error(err)
    assert not (env / "blobs" / "workloads" / "w1").exists()  # nothing uploaded


@pytest.mark.parametrize(
    "source",
    [
        "def process(r):\n    return r\n",
        "try:\n    from json import loads as process\nexcept ImportError:\n    def process(r):\n        return r\n",
        "process = lambda r: r\n",
        "from os.path import *\n",  # a star import may bind anything: not refused
    ],
)
def test_scripts_that_define_process_some_way_are_packed(capsys, env, source):
    data, script = files(env)
    script.write_text(source)
    code, _, err = run(capsys, "pack", str(data), str(script), "--id", "w1")
    assert code == 0, err


def test_an_empty_data_file_packs_with_a_warning(capsys, env):
    data, script = files(env)
    data.write_text("")
    code, _, err = run(capsys, "pack", str(data), str(script), "--id", "w1")
    assert code == 0 and f"rqp: warning: {data} is empty: workload w1 has no records to process" in err


def test_make_data_runs_without_arguments(tmp_path):
    cp = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "make_data.py")], cwd=tmp_path, capture_output=True, text=True
    )
    assert cp.returncode == 0, cp.stderr
    lines = (tmp_path / "data.jsonl").read_text().splitlines()
    assert len(lines) == 10_000 and json.loads(lines[7])["id"] == 7
    cp = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "make_data.py"), "--help"], capture_output=True, text=True
    )
    assert cp.returncode == 0 and "usage:" in cp.stdout


def test_non_json_lines_are_named_once_in_the_log(caplog):
    lines = b"".join(b"a;b;%d\n" % i for i in range(100))
    with caplog.at_level(logging.WARNING, logger="rqp.records"):
        assert len(list(parse_records("jsonl", [lines], workload_id="w1"))) == 100
    [rec] = caplog.records
    assert f"workload w1: none of its first {JSONL_PROBE} records is valid JSON" in rec.getMessage()
    assert "--format csv" in rec.getMessage()
    caplog.clear()
    good = b"".join(b'{"n": %d}\n' % i for i in range(100)) + b"not json\n"
    with caplog.at_level(logging.WARNING, logger="rqp.records"):
        assert len(list(parse_records("jsonl", [good], workload_id="w1"))) == 101
    assert caplog.records == []


def test_status_hints_at_the_format_when_no_record_is_json(capsys, env, world, monkeypatch):  # noqa: F811
    data = env / "semi.jsonl"
    data.write_text("".join(f"a;b;{i}\n" for i in range(30)))
    (env / "semi.py").write_text(OK_SCRIPT)
    from rqp.workload import pack

    pack(world.store, world.keys, "semi", data, env / "semi.py", signer=world.signer.key)
    finish(world, "semi")
    code, out, _ = run(capsys, "status", "semi")
    assert code == 1
    assert "hint: none of the first 30 records is valid JSON: if the data is not JSON Lines, re-pack it" in " ".join(
        out.split()
    )
    monkeypatch.delenv("RQP_KEK_FILE")  # without the KEK the reason cannot be read: a more careful hint
    code, out, _ = run(capsys, "status", "semi")
    assert "none of the first 30 records succeeded; if they fail as 'not valid JSON'" in " ".join(out.split())


def test_a_misspelled_variable_is_named_once_with_the_closest_setting(capsys):
    env = {"RQP_REDIS_ULR": "redis://h:1/0", "RQP_LOG_LEVEL": "INFO", "RQP_CONSOLE_PORT": "1", "RQP_CHUNK_SIZE": "8"}
    Settings.load(env=env)
    Settings.load(env=env)
    err = capsys.readouterr().err
    assert err.count("warning: RQP_REDIS_ULR is not an rqp setting and is ignored (did you mean RQP_REDIS_URL?)") == 1
    assert "RQP_LOG_LEVEL" not in err and "RQP_CONSOLE_PORT" not in err and "RQP_CHUNK_SIZE" not in err


def test_the_default_blob_store_is_absolute():
    assert DEFAULT_BLOB_URL.startswith("file:///") and "rqp/blobs" in DEFAULT_BLOB_URL
    assert default_blob_url({"XDG_DATA_HOME": "/data", "HOME": "/home/u"}) == "file:///data/rqp/blobs"
    assert default_blob_url({"HOME": "/home/u"}) == "file:///home/u/.local/share/rqp/blobs"
    assert default_blob_url({"XDG_DATA_HOME": "relative", "HOME": "/home/u"}) == "file:///home/u/.local/share/rqp/blobs"
    assert Settings.load(env={"HOME": "/home/u"}).blob_url == "file:///home/u/.local/share/rqp/blobs"


# ---------------------------------------------------------------------------------- issue 17: the terminal
def test_status_exit_codes_a_script_can_use(capsys, env, world, r):  # noqa: F811
    clean = world.pack("clean", [{"n": i} for i in range(5)])
    finish(world, clean)
    assert run(capsys, "status", clean)[0] == 0
    some = world.pack("some", [{"n": i} for i in range(5)], SOME_FAIL)
    finish(world, some)
    assert run(capsys, "status", some)[0] == 1
    running = world.pack("running", [{"n": i} for i in range(30)])
    world.run(running).step()
    assert run(capsys, "status", running)[0] == 3
    Ledger(r, running).fail(generic="broken", sealed="", now=0.0)
    assert run(capsys, "status", running)[0] == 4
    code, _, err = run(capsys, "status", "nosuch")
    assert code == 7 and "is not known to Redis" in one_line_error(err)
    world.pack("packed", [{"n": 1}])
    code, _, err = run(capsys, "status", "packed")
    assert code == 7 and "workload packed is packed" in err and "but not scheduled yet" in err
    assert set(FINISHED_STATES) == {s.value for s in State if s.finished}


def watch_while_it_finishes(env: Path, world, wid: str, interval: float, lines: int = 1) -> tuple[str, str]:  # noqa: F811
    """``rqp status W --watch`` into a pipe: the first of the ``lines`` it prints before the
    workload is finished in-process, and all it prints after; it must exit 0 at the end."""
    watch = subprocess.Popen(
        [bin_path("rqp"), "status", wid, "--watch", "--interval", str(interval)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=env, text=True,
    )  # fmt: skip
    try:
        seen = [watch.stdout.readline() for _ in range(lines)]  # blocks until the watch has looked
        finish(world, wid)
        out, err = watch.communicate(timeout=60)
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.communicate()
    assert watch.returncode == 0, err
    return seen[0], out


def test_watch_waits_for_a_packed_workload_to_be_scheduled(env, world):  # noqa: F811
    """``rqp status W --watch`` started before the scheduler (a packed workload) waits for it,
    then follows the workload to its end."""
    wid = world.pack("early", [{"n": i} for i in range(8)])
    first, out = watch_while_it_finishes(env, world, wid, 0.05)
    assert first.startswith("early  [packed]  waiting for a scheduler to start it (rqp-scheduler run early"), first
    assert "early  [done]  100.0%" in out and "8 of 8 done  0 failed" in out and "waiting" not in out


def test_watch_into_a_pipe_prints_only_what_changed(env, world):  # noqa: F811
    """Into a pipe or a log, ``--watch`` prints a refresh only when it says something new: a
    stalled workload watched every 10 ms is not hundreds of identical blocks."""
    wid = world.pack("stalled", [{"n": i} for i in range(8)])
    world.run(wid).step()
    first, out = watch_while_it_finishes(env, world, wid, 0.01, lines=4)  # a block, and its hint
    assert first.startswith("stalled  [running]"), first
    blocks = ["stalled  [" + b for b in out.split("stalled  [")[1:]]
    repeated = [b for prev, b in itertools.pairwise(blocks) if b == prev]
    assert not repeated, out  # refreshed every 10 ms: hundreds of identical blocks without the check
    assert len(blocks) <= 30 and blocks[-1].startswith("stalled  [done]"), out


def test_status_says_when_no_processor_serves_the_queue(capsys, env, world):  # noqa: F811
    wid = world.pack("lonely", [{"n": i} for i in range(30)])
    world.run(wid).step()
    code, out, _ = run(capsys, "status", wid)
    assert code == 3
    text = " ".join(out.split())
    assert "hint: no processor is running for queue rqp" in text
    assert "12 queued" in text and "0 in chunks being processed" in text
    code, out, _ = run(capsys, "status", wid, "--json")
    doc = json.loads(out)
    assert doc["workers"] == 0 and doc["hints"][0].startswith("hint: no processor is running")


def test_record_times_are_iso_8601_for_a_person_and_numbers_in_json(capsys, env, world, monkeypatch):  # noqa: F811
    wid = world.pack("times", [{"n": i} for i in range(4)])
    finish(world, wid)
    code, out, _ = run(capsys, "status", wid, "--record", "2")  # captured: not a terminal, so JSON
    doc = json.loads(out)
    assert code == 0 and isinstance(doc["finished_at"], float)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    code, out, _ = run(capsys, "status", wid, "--record", "2")
    assert out.startswith("record 2: done (attempt 1)\n  workload  times\n")
    finished = re.search(r"finished\s+(\S+)", out).group(1)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d", finished), out
    from datetime import datetime

    assert abs(datetime.fromisoformat(finished).timestamp() - doc["finished_at"]) < 0.001
    code, out, _ = run(capsys, "status", wid, "--record", "2", "--json")
    assert json.loads(out)["finished_at"] == doc["finished_at"]


def test_list_is_a_table_with_ages_and_packed_workloads(capsys, env, world):  # noqa: F811
    done = world.pack("done-one", [{"n": i} for i in range(5)], SOME_FAIL)
    finish(world, done)
    world.pack("p", [{"n": 1}])
    code, out, _ = run(capsys, "list")
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split() == ["WORKLOAD", "STATE", "PRIORITY", "PROGRESS", "DONE", "FAILED", "AGE"]
    cells = {row.split()[0]: row.split() for row in rows}
    assert cells["done-one"][1:6] == ["done", "normal", "100.0%", "4/5", "1"]
    assert cells["p"][1:6] == ["packed", "normal", "-", "-", "-"]
    assert all(re.fullmatch(r"\d+s", c[6]) for c in cells.values())
    state_at = header.index("STATE")
    assert all(row[state_at - 2 : state_at] == "  " and row[state_at] != " " for row in rows)  # aligned
    assert [r.split()[0] for r in rows] == ["p", "done-one"]  # newest first


def test_list_fits_a_narrow_terminal(capsys, env, world, monkeypatch):  # noqa: F811
    long_id = "sales-2026-q3-eu-west-hourly-rollup-20261202-072154-ab12"
    world.pack(long_id, [{"n": 1}])
    world.pack("short", [{"n": 1}])
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.setenv("COLUMNS", "60")
    code, out, _ = run(capsys, "list")
    lines = out.splitlines()
    assert code == 0 and all(len(line) < 60 for line in lines), out
    assert lines[0].split() == ["WORKLOAD", "STATE", "PRIORITY", "DONE", "FAILED", "AGE"]  # PROGRESS went first
    shortened = lines[2].split()[0]
    assert (
        "…" in shortened and long_id.startswith(shortened.split("…")[0]) and long_id.endswith(shortened.split("…")[1])
    )
    assert lines[-1] == "(ids shortened: --wide shows them whole)"
    code, out, _ = run(capsys, "list", "--wide")
    assert long_id in out and "PROGRESS" in out


def test_a_percentage_is_never_rounded_up_to_done():
    p = progress(total=3000, done=2969, failed=30)
    assert "99.9%" in format_status(p, 100)[0] and "100.0%" not in format_progress(p)


def test_format_status_fits_the_width_and_says_what_processing_means():
    p = progress(workload="sales-2026-q3-20261202-072154-ab12", done=1_234_567, total=10_000_000, enqueued=10_000_000)
    for width in (79, 60, 40):
        lines = format_status(p, width, ["hint: " + "a long hint that has to wrap " * 5])
        assert all(len(line) <= width for line in lines), lines
    text = " ".join(format_status(p, 200))
    assert "64 in chunks being processed" in text and "64 processing" not in text
    assert len(format_progress(p, 79)) <= 79 and p.workload in format_progress(p, 79)


def test_a_paused_workload_has_no_eta_and_a_cancelled_one_says_what_never_ran():
    paused = " ".join(format_status(progress(state="paused", done=1_024, total=3_000, enqueued=3_000), 200))
    assert "ETA -- (paused: 'rqp resume' to go on)" in paused, paused
    cancelled = " ".join(
        format_status(progress(state="cancelled", done=1_024, failed=6, total=3_000, enqueued=3_000), 200)
    )
    assert "1,024 of 3,000 done  6 failed  1,970 never ran (cancelled)" in cancelled, cancelled
    done = " ".join(format_status(progress(state="done", done=3_000, total=3_000, enqueued=3_000), 200))
    assert "never ran" not in done and "ETA" not in done


def test_watch_redraws_in_place_at_80_columns(env, world):  # noqa: F811
    """``rqp status --watch`` on a real pseudo-terminal 80 columns wide, while the workload runs
    to its end: no line ever reaches the last column, and the screen ends with exactly the final
    block -- no debris of earlier redraws."""
    wid = world.pack("watched-workload-with-a-long-name-2026", [{"n": i} for i in range(60)])
    run_, proc = world.run(wid), world.processor()
    # what the run costs by VM: the processor's host ("test") is a Spot VM whose drains lost 12.5 s
    record_vm(world.r, "test", VmLabel(SPOT_VM, "spot"))
    world.r.hset(f"rqp:w:{wid}:meta", f"{DRAINED_SECONDS}test", 12.5)
    # the watch has drawn the workload running once "[running]" is on the terminal
    watch = PtyCommand([bin_path("rqp"), "status", wid, "--watch", "--interval", "0.05"], cwd=env, marker=b"[running]")
    try:
        assert watch.drawn.wait(60), bytes(watch.got)
        world.run_to_end(run_, proc)
        assert watch.wait(60) == 0
    finally:
        proc.pool.close()
        watch.close()
    output = watch.output()
    assert "[done]" in output
    screen = watch.screen()
    assert screen.wrapped == 0, output
    final = screen.text()
    assert final[0].startswith(f"{wid}  [done]  100.0%  [#") and len(final) == 5, final
    assert final[1] == "60 of 60 done  0 failed"
    # the cost by VM, as the summary and the console say it, wrapped at a piece's edge
    assert final[3] == "processor-seconds by VM:", final
    assert re.fullmatch(rf"{SPOT_VM} \d+\.\d s \(Spot\) \+ 12\.5 s lost to evictions", final[4]), final
    assert all(len(line) < 80 for line in final)


#: a Spot VM's name as Azure gives a scale set's instances (long enough to wrap at 80 columns)
SPOT_VM = "rqp-processor-spot-vmss_000001"


def test_status_lists_the_costliest_vms_and_counts_the_rest():
    vms = [{"host": f"vm-{i}", "seconds": float(i), "priority": "regular", "drained_seconds": 0.0} for i in range(9)]
    vms.append({"host": "evicted", "seconds": 1.0, "priority": "spot", "drained_seconds": 30.0})
    p = progress(state="done", done=3_000, total=3_000, enqueued=3_000, vms=vms)
    lines = format_status(p, 79)
    assert all(len(line) <= 79 for line in lines), lines
    text = "  ".join(lines)
    assert "evicted 1.0 s (Spot) + 30.0 s lost to evictions" in text and "vm-8 8.0 s (regular)" in text, text
    assert "vm-3 " not in text and "and 4 more VMs ('rqp status --json' lists them all)" in text, text
    assert "processor-seconds" not in " ".join(format_status(progress(state="done", done=3, total=3, enqueued=3), 79))


def test_a_redis_user_without_the_permission_is_one_line(capsys, env, r, monkeypatch, tmp_path):
    """A user whose ACL lacks what a command needs (a processor's credentials used for
    `rqp list`): exit 6, naming the user and where the rules are, not a traceback."""
    r.execute_command("ACL", "SETUSER", "onlyping", "on", ">pingpass-0123456789", "+ping", "+hello", "+auth")
    try:
        (tmp_path / "pw").write_text("pingpass-0123456789\n")
        host_port = os.environ.get("RQP_REDIS_URL", "").split("//", 1)[1]
        monkeypatch.setenv("RQP_REDIS_URL", f"redis://onlyping@{host_port}")
        monkeypatch.setenv("RQP_REDIS_PASSWORD_FILE", str(tmp_path / "pw"))
        code, _out, err = run(capsys, "list")
        line = one_line_error(err)
        assert code == errors.RedisUnavailableError.exit_code == 6, err
        assert "the Redis user 'onlyping' may not do what 'rqp list' needs" in line, line
        assert "rqp redis-acl render" in line, line
    finally:
        r.execute_command("ACL", "DELUSER", "onlyping")


def test_priority_on_pack_and_submit(capsys, env, r, operator, signer):
    """`--priority` on pack and on submit: the workload's chunks go to that queue, and the
    audit log says who set it."""
    data, script = files(env)
    code, _, err = run(capsys, "pack", str(data), str(script), "--id", "urgent1", "--priority", "high")
    assert code == 0, err
    assert Ledger(r, "urgent1").priority().value == "high"
    assert run(capsys, "pack", str(data), str(script), "--id", "later1")[0] == 0
    code, out, err = run(capsys, "submit", "later1", "--priority", "low")
    assert code == 0 and "submitted later1" in out, err
    assert Ledger(r, "later1").priority().value == "low"
    assert b"later1" in r.lrange("rqp:submissions", 0, -1)
    entries = [e for e in read_audit(r, operator.trust, signer.trust) if e.workload in ("later1", "urgent1")]
    assert [e.what for e in entries] == ["priority low", "priority high"]
    # pack signs with the packer's key (the workload's submitter); submit with the operator key
    assert [(e.verified, e.signer) for e in entries] == [
        (True, operator.key.fingerprint),
        (True, signer.key.fingerprint),
    ]
    with pytest.raises(SystemExit) as exc:
        main(["submit", "later1", "--priority", "urgent"])
    assert exc.value.code == 2 and "invalid choice: 'urgent'" in capsys.readouterr().err


def test_retry_of_an_unknown_workload_says_so(capsys, env):
    """`rqp retry nosuch --failed` is not "no failed records" with exit 0."""
    code, out, err = run(capsys, "retry", "nosuch", "--failed")
    assert code == 7, (out, err)
    line = one_line_error(err)
    assert "workload nosuch is not known to Redis" in line and "rqp list" in line, line


def test_keygen_operator_writes_the_operator_key_pair_by_default(capsys, tmp_path, monkeypatch):
    """`rqp keygen --operator` writes keys/operator.pem (0600) and keys/operator.pub.pem, and says
    where the public half goes; the public half loads as a trusted operator."""
    from rqp.signing import LocalSigningKey, TrustStore

    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "keygen", "--operator")
    assert code == 0, err
    priv, pub = tmp_path / "keys" / "operator.pem", tmp_path / "keys" / "operator.pub.pem"
    assert priv.stat().st_mode & 0o777 == 0o600 and pub.exists()
    assert "RQP_TRUSTED_OPERATORS_FILE" in out and "keys/operator.pub.pem" in out
    fp = LocalSigningKey(priv).fingerprint
    assert fp in out and fp in TrustStore.from_file(pub).signers
    assert run(capsys, "keygen", "--operator", "--signing")[0] == 2
