"""Issue 24 item 17: the messages of a workload removed with ``rqp delete --shred`` are shown as
the deleted workload's, not as "workload W not found ... pack it with 'rqp pack'"."""

from __future__ import annotations

import json

from world import cli_env, world  # noqa: F401 - fixtures

from rqp.cli import main
from rqp.messages import pack_messages
from rqp.status import StatusRecord
from rqp.workload import Workload


def test_peek_says_deleted_for_the_messages_of_a_shredded_workload(capsys, cli_env, world):  # noqa: F811
    wid = world.pack("gone", [{"n": 1}])
    opened = Workload.open(world.store, world.keys, wid, world.trust())
    mq, queue = world.mq(), world.settings.status_queue
    for i in range(2):
        [(_mid, body)] = pack_messages(
            opened, queue, "status", [StatusRecord(wid, i, "done", 1).to_json()], mq.max_message_bytes
        )
        mq.send(queue, body)
    assert main(["delete", wid, "--shred", "--yes"]) == 0
    capsys.readouterr()
    assert main(["events", "--peek"]) == 0
    out, err = capsys.readouterr()
    lines = [json.loads(x) for x in err.splitlines() if x.startswith("{")]
    assert len(lines) == 2, err
    for line in lines:
        assert line["workload"] == wid and "error" not in line
        assert "was deleted and its data key destroyed (--shred)" in line["deleted"]
    assert "pack it" not in err and out == ""
