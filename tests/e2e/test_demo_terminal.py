"""``make demo`` on a real pseudo-terminal 80 columns wide (issue #24 item 9): its progress is
redrawn in place, so the screen it leaves shows the final status block once -- not six or seven
copies of a bar that was wider than the terminal."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pty_terminal import COLUMNS, PtyCommand

ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_leaves_one_status_block_on_an_80_column_terminal(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RQP_")}
    demo = PtyCommand(
        [sys.executable, str(ROOT / "examples" / "demo.py"), "--records", "3000", "--dir", str(tmp_path / "demo")],
        cwd=tmp_path, env=env, rows=40,
    )  # fmt: skip
    try:
        assert demo.wait(180) == 0, demo.output(errors="replace")[-3000:]
    finally:
        demo.close()  # until every process the demo started has closed the terminal
    screen = demo.screen(errors="replace")
    final = screen.text()
    status = [line for line in final if line.startswith("demo  [")]
    assert len(status) == 1 and status[0].startswith("demo  [done]  100.0%  [#"), final
    assert not any("[running]" in line or "reading" in line for line in final), final
    block = final[final.index(status[0]) : final.index(status[0]) + 3]
    assert all(len(line) < COLUMNS for line in block), block
    assert "demo:       OK" in final
