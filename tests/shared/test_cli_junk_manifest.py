"""#29 atk4 B5 through the real ``rqp`` entry point, a real Redis and a real blob directory: a
blob-store writer sets one workload's ``manifest.json`` to junk (``null``, ``5``, a 5000-deep
``[[...]]``). ``rqp list`` still lists every workload -- that one marked, with the one line saying
why -- and ``rqp status``/``verify``/``results`` of it end in that one line, never a traceback."""

from __future__ import annotations

import pytest
from cli_helpers import env, finish, one_line_error, run  # noqa: F401 - a fixture
from world import world  # noqa: F401 - a fixture

from rqp.workload import blob_name

SCRIPT = "def process(r):\n    return r['n'] * 2\n"
JUNK = {"null": b"null", "int": b"5", "string": b'"x"', "deep": b"[" * 5000 + b"]" * 5000}
NOT_A_MANIFEST = "manifest.json of workload junk is not a manifest ("


@pytest.mark.parametrize("junk", list(JUNK), ids=list(JUNK))
def test_one_junk_manifest_is_that_workloads_line_only(capsys, env, world, junk):  # noqa: F811
    for wid in ("fine", "junk"):
        world.pack(wid, [{"n": i} for i in range(4)], SCRIPT)
        finish(world, wid)
    world.store.put(blob_name("junk", "manifest.json"), JUNK[junk])
    world.pack("packed", [{"n": 1}], SCRIPT)  # only packed: listed from the blob store
    world.store.put(blob_name("zz", "manifest.json"), JUNK[junk])  # a junk directory of its own

    code, out, err = run(capsys, "list")
    assert code == 0 and "Traceback" not in err, err
    cells = {line.split()[0]: line.split() for line in out.splitlines()[1:] if line and line[0] != "*"}
    assert cells["fine"][1:5] == ["done", "normal", "100.0%", "4/4"], out
    assert cells["junk"][1] == "done*", out  # its counts are Redis's word only
    assert cells["packed"][1] == "packed" and cells["zz"][1] == "unreadable*", out
    notes = [line for line in out.splitlines() if line.startswith("* ")]
    assert notes == [
        f"* junk: {NOT_A_MANIFEST}" + notes[0].split("(", 1)[1],
        f"* zz: {NOT_A_MANIFEST.replace('junk', 'zz')}" + notes[1].split("(", 1)[1],
    ], out
    assert notes[0].endswith("restore that blob, or re-pack the workload (rqp pack --replace)"), out

    code, out, err = run(capsys, "status", "junk")
    assert code == 4 and "Traceback" not in err, err
    # the screen wraps at the terminal's width (80 columns where there is none): read it as words
    assert f"unverified: these counts are Redis's own; {NOT_A_MANIFEST}" in " ".join(out.split()), out
    for argv in (("verify", "junk"), ("results", "junk")):
        code, out, err = run(capsys, *argv)
        assert code == 4 and not out, (argv, out, err)
        assert NOT_A_MANIFEST in one_line_error(err), (argv, err)
    code, out, err = run(capsys, "status", "fine")
    assert code == 0 and "unverified" not in out, (out, err)
