"""``make demo`` on a real pseudo-terminal 80 columns wide (issue #24 item 9): its progress is
redrawn in place, so the screen it leaves shows the final status block once -- not six or seven
copies of a bar that was wider than the terminal."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

from screen import Screen

ROOT = Path(__file__).resolve().parents[2]
COLUMNS = 80


def _drain(fd: int, into: bytearray) -> None:
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the other side closed
            return
        if not chunk:
            return
        into.extend(chunk)


def test_the_demo_leaves_one_status_block_on_an_80_column_terminal(tmp_path):
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, COLUMNS, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES") and not k.startswith("RQP_")}
    demo = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "demo.py"), "--records", "3000", "--dir", str(tmp_path / "demo")],
        stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, cwd=tmp_path, env={**env, "TERM": "xterm"},
    )  # fmt: skip
    os.close(slave)
    got = bytearray()
    reader = threading.Thread(target=_drain, args=(master, got), daemon=True)
    reader.start()
    try:
        assert demo.wait(180) == 0, got.decode(errors="replace")[-3000:]
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        reader.join(10)  # until every process the demo started has closed the terminal
        os.close(master)
    output = got.decode(errors="replace")
    screen = Screen(COLUMNS)
    screen.feed(output)
    final = screen.text()
    status = [line for line in final if line.startswith("demo  [")]
    assert len(status) == 1 and status[0].startswith("demo  [done]  100.0%  [#"), final
    assert not any("[running]" in line or "reading" in line for line in final), final
    block = final[final.index(status[0]) : final.index(status[0]) + 3]
    assert all(len(line) < COLUMNS for line in block), block
    assert "demo:       OK" in final
