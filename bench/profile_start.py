"""Time the start of a workload on the wall clock: from starting ``rqp submit`` to a warm
``rqp-scheduler serve`` to the workload's ``started_at``, its first queued job and its first
committed record -- step by step.

    python bench/profile_start.py [--rounds R] [--records N] [--burn SECONDS]

One Redis, one directory blob store, one packed workload per round (process() burning
``--burn`` of CPU per record, as the efficiency rows), ``rqp-processor --workers 2`` and
``rqp-scheduler serve`` started and serving before the clock starts. ``rqp submit`` and the
service run through small wrappers (``_client`` and ``_serve`` below) that stamp each step with
``time.time()`` in a JSON file; nothing of rqp is changed or skipped. Prints one line per round
and the median of each step, in ms from the start of ``rqp submit``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
#: stamps: (step, module, attribute path, "start"/"end": when the step is stamped)
SERVE_STEPS: tuple[tuple[str, str, str, str], ...] = (
    ("serve: took the submission", "rqp_scheduler.scheduler", "Scheduler.add", "start"),
    ("serve: workload opened (signature, key)", "rqp_scheduler.run.workload_run", "WorkloadRun.__init__", "end"),
    ("serve: script read", "rqp.workload", "Workload.script_source", "end"),
    ("serve: script checked", "rqp.sandbox", "check_script", "end"),
    ("serve: data opened (first range decrypted)", "rqp_scheduler.run.records", "RecordStream.open", "end"),
    ("serve: first fill of the window begins", "rqp_scheduler.run.enqueue", "Enqueuer.fill_window", "start"),
    ("serve: first records read and parsed", "rqp_scheduler.run.records", "RecordStream.batches", "end"),
    ("serve: first transaction prepared (sealed)", "rqp_scheduler.run.enqueue", "Enqueuer._prepare", "end"),
    ("serve: first job queued (its transaction applied)", "rqp_scheduler.run.enqueue", "Enqueuer._send", "end"),
    ("serve: first window queued", "rqp_scheduler.run.enqueue", "Enqueuer.fill_window", "end"),
)


def _stamp(stamps: dict[str, float], step: str, fn: Callable[..., Any], when: str) -> Callable[..., Any]:
    """``fn``, recording the wall time of its first call's start or end as ``stamps[step]``."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if when == "start":
            stamps.setdefault(step, time.time())
        try:
            return fn(*args, **kwargs)
        finally:
            if when == "end":
                stamps.setdefault(step, time.time())

    return wrapper


def _patch(stamps: dict[str, float], module: str, path: str, step: str, when: str) -> None:
    import importlib

    owner: Any = importlib.import_module(module)
    *outer, name = path.split(".")
    for part in outer:
        owner = getattr(owner, part)
    setattr(owner, name, _stamp(stamps, step, getattr(owner, name), when))


def _serve(out: str, argv: list[str]) -> int:
    """``rqp-scheduler`` with its steps stamped (written to ``out`` when it returns)."""
    stamps: dict[str, float] = {"serve: process start": float(os.environ.get("BENCH_T0", "0"))}
    from rqp_scheduler.cli import main as scheduler_main

    for step, module, path, when in SERVE_STEPS:
        _patch(stamps, module, path, step, when)
    try:
        return scheduler_main(argv)
    finally:
        Path(out).write_text(json.dumps(stamps))


def _client(out: str, argv: list[str]) -> int:
    """``rqp`` with its steps stamped: imports done, the submission pushed."""
    t0 = float(os.environ["BENCH_T0"])
    stamps: dict[str, float] = {"submit: interpreter up": time.time()}
    import rqp.cli
    from rqp.cli import workloads

    stamps["submit: imports done"] = time.time()
    workloads.submit = _stamp(stamps, "submit: pushed (RPUSH)", workloads.submit, "end")
    try:
        return rqp.cli.main(argv)
    finally:
        stamps["submit: exiting"] = time.time()
        Path(out).write_text(json.dumps({"t0": t0, **stamps}))


def _round(k: int, work: Path, kek: Path, records: int, burn: float, pythonpath: str = "") -> dict[str, float]:
    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(HERE / "peers"))
    import common
    import run as bench

    env = bench.RqpEnv(work, f"start-r{k}", kek)
    if pythonpath:  # another copy of the sources (``--baseline``) for every rqp process of the round
        env.env["PYTHONPATH"] = pythonpath
    try:
        script = work / "burn.py"
        if not script.exists():
            script.write_text(common.burn_script(burn))
        data = bench.Data(records)
        wid = env.pack(f"s-{k}", data.file(records, work), script)
        env.start_processor(2)
        serve_out, client_out = env.root / "serve-stamps.json", env.root / "client-stamps.json"
        log_file = env.root / "serve.log"
        with open(log_file, "wb") as fh:
            proc = subprocess.Popen(
                [sys.executable, __file__, "--serve", str(serve_out), "--log-level", "INFO", "serve"],
                env=env.env, cwd=env.root, stdout=fh, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            while bench.SERVING_LINE not in log_file.read_bytes():
                if proc.poll() is not None:
                    raise RuntimeError(f"serve did not start; see {log_file}")
                time.sleep(0.01)  # polling a log file: there is nothing to block on
            t0 = time.time()
            subprocess.run(
                [sys.executable, __file__, "--client", str(client_out), "submit", wid],
                env={**env.env, "BENCH_T0": repr(t0)}, cwd=env.root, check=True, capture_output=True,
            )  # fmt: skip
            meta_key, done_key = f"rqp:w:{wid}:meta", f"rqp:w:{wid}:done"
            first_done = None
            while (env.r.hget(meta_key, "state") or b"").decode() not in ("done", "failed", "cancelled"):
                if first_done is None and env.r.bitcount(done_key):
                    first_done = time.time()
                time.sleep(0.002)
            first_done = first_done or time.time()
            meta = {a.decode(): b.decode() for a, b in env.r.hgetall(meta_key).items()}
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        stamps = {**json.loads(client_out.read_text()), **json.loads(serve_out.read_text())}
        stamps.pop("serve: process start", None)
        stamps["serve: started_at (meta)"] = float(meta["started_at"])
        stamps["first record done (sampled every 2 ms)"] = first_done
        stamps["finished_at (meta)"] = float(meta["finished_at"])
        base = stamps.pop("t0")
        return {k: round((v - base) * 1000, 1) for k, v in sorted(stamps.items(), key=lambda kv: kv[1])}
    finally:
        env.close()


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--serve":
        return _serve(sys.argv[2], sys.argv[3:])
    if len(sys.argv) > 2 and sys.argv[1] == "--client":
        return _client(sys.argv[2], sys.argv[3:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--records", type=int, default=5000)
    ap.add_argument("--burn", type=float, default=0.001, help="process()'s CPU seconds per record")
    ap.add_argument(
        "--baseline",
        help="a directory holding another copy of the sources (DIR/shared/src, ...; e.g. main's, by git archive): "
        "its rounds alternate with this tree's",
    )
    args = ap.parse_args()
    sys.path.insert(0, str(HERE))
    import run as bench

    bench.compile_sources()
    work = Path(tempfile.mkdtemp(prefix="rqp-start-"))
    bin_dir = Path(sys.executable).parent
    kek = work / "kek.pem"
    subprocess.run(
        [str(bin_dir / "rqp"), "keygen", "--out", str(kek)], check=True, capture_output=True, env=bench.clean_env()
    )
    subprocess.run(
        [str(bin_dir / "rqp"), "keygen", "--signing", "--out", str(work / "signer.pem")],
        check=True, capture_output=True, env=bench.clean_env(),
    )  # fmt: skip
    sides = {"this tree": ""}
    if args.baseline:
        base = Path(args.baseline).resolve()
        sides = {"baseline": os.pathsep.join(str(base / p / "src") for p in ("shared", "scheduler", "processor"))}
        sides["this tree"] = ""
        for d in sides["baseline"].split(os.pathsep):
            subprocess.run([sys.executable, "-m", "compileall", "-q", d], check=True, capture_output=True)
    rounds: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
    made = 0
    for k in range(args.rounds):
        for side, pythonpath in sides.items():
            load = os.getloadavg()[0]
            rnd = _round(made, work, kek, args.records, args.burn, pythonpath)
            made += 1
            rounds[side].append(rnd)
            print(
                f"{side} round {k + 1} (load {load:.1f}): " + ", ".join(f"{a} {b}" for a, b in rnd.items()), flush=True
            )
    steps = list(rounds["this tree"][0])
    print("median ms from starting `rqp submit`: " + " | ".join(sides))
    for step in steps:
        cells = []
        for side in sides:
            values = [r[step] for r in rounds[side] if step in r]
            cells.append(f"{statistics.median(values):8.1f}" if values else "       -")
        print(" | ".join(cells) + f"  {step}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
