"""``rqp retry --failed`` and the records refused when the data was read (no id in the
``--id-field``: attempts 0). They never ran and the same data refuses them again,
so a retry round leaves them failed with their reason and runs the others -- it used to queue
them, and a keyed workload's retry round failed as a whole ("unexpected KeyError", ninth review
G8)."""

from __future__ import annotations

import json
from dataclasses import replace

from rqp.cli import main as rqp_main
from rqp.summary import read_summary
from rqp.workload import pack

FAILS_ON_THREE = "def process(r):\n    if r['n'] % 3 == 0:\n        raise ValueError('three')\n    return r['n']\n"
N = 12


def _keyed(world, wid: str, without_key: set[int], script: str = FAILS_ON_THREE) -> str:
    data = world.root / f"{wid}.jsonl"
    data.write_text(
        "".join(json.dumps({"n": n, **({} if n in without_key else {"uid": f"k{n}"})}) + "\n" for n in range(N))
    )
    (world.root / f"{wid}.py").write_text(script)
    pack(world.store, world.keys, wid, data, world.root / f"{wid}.py", signer=world.signer.key, id_field="uid")
    return wid


def _run(world, proc, wid: str):
    run = world.run(wid)
    world.run_to_end(run, proc)
    return read_summary(world.store, run.workload)


def test_a_keyed_workload_with_a_record_refused_for_no_id_retries_the_others(world, proc, cli_env, capsys, operator):
    world.settings = replace(world.settings, max_attempts=1, results_key_file=operator.path)
    wid = _keyed(world, "g8", without_key={5})
    first = _run(world, proc, wid)
    failed = {f.id: f for f in first.failures}
    assert set(failed) == {0, 3, 5, 6, 9} and failed[5].attempts == 0 and failed[5].key is None
    assert rqp_main(["retry", wid, "--failed"]) == 0
    assert "re-queued 4 failed records" in capsys.readouterr().out  # not record 5
    second = _run(world, proc, wid)
    assert second.round == 2 and (second.done, second.failed) == (first.done, first.failed)
    again = {f.id: f for f in second.failures}
    assert again[5].error == failed[5].error and again[5].attempts == 0  # as it was, not run
    assert all(again[i].attempts == 1 and again[i].key == f"k{i}" for i in (0, 3, 6, 9))
    assert rqp_main(["verify", wid]) == 0


def test_a_retry_of_only_records_refused_when_read_says_why_none_is_run(world, proc, cli_env, capsys):
    world.settings = replace(world.settings, max_attempts=1)
    wid = _keyed(world, "refused", without_key={4}, script="def process(r):\n    return r['n']\n")
    s = _run(world, proc, wid)
    assert [(f.id, f.attempts) for f in s.failures] == [(4, 0)]
    assert rqp_main(["retry", wid, "--failed"]) == 7  # a WorkloadError
    err = capsys.readouterr().err
    assert "its 1 failed records were refused when the data was read" in err and "fix the data and re-pack" in err
