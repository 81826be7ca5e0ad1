"""The Redis-writer fuzzer (``tools/chaos.py``) in CI: for each family of the trust table's keys,
five seeded runs of real small workloads with four mutations each (200 mutations in all), each
run classified as exact, refused (an authentication failure named, a value that does not decode
failing its workload loudly, a cut audit chain flagged, counts marked unverified), denied (a
denial of service, counted honestly) or BAD (a silent wrong answer, a report that disagrees with
the sealed summary, a crash). No family may end BAD.

Two wrong answers the first full run found -- a real cancel before the data was read to its end
sealing a summary that counted only the records read, and an audit list emptied entirely still
passing ``rqp audit --verify`` -- are fixed and pinned below by their seeds.

``make chaos`` runs 5,000 mutations over every family and prints the tally.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
chaos = importlib.import_module("chaos")

#: mutations per run, and the seeds of each family's runs
PER_RUN = 4
SEEDS: dict[str, tuple[int, ...]] = {f: (1, 2, 3, 4, 5) for f in chaos.FAMILIES}
#: the chunk family reaches the scheduler's crash only when a junk value is short and its lease
#: ends until the reclaim gives up (past the free re-runs after a lost worker, then each attempt): seeds 106 and 116 are runs ``make chaos`` found doing that (issue #22's seventh
#: reproduction), kept so the open hole stays pinned
SEEDS["chunk"] = (106, 116, 1, 2, 3)


@pytest.fixture(scope="module")
def lab(redis_server: Any, tmp_path_factory: Any) -> Iterator[Any]:
    lab = chaos.Lab(tmp_path_factory.mktemp("chaos"), redis_server.url)
    yield lab
    lab.close()


@pytest.mark.parametrize("family", list(chaos.FAMILIES))
def test_a_redis_writer_gets_no_silent_wrong_answer(lab, family):
    outcomes = [chaos.run_case(lab, family, seed, PER_RUN) for seed in SEEDS[family]]
    applied = [m for o in outcomes for m in o.mutations if not m.split(": ", 1)[1].startswith("(")]
    assert applied, f"no mutation of family {family} changed anything: the fuzzer tests nothing"
    bad = [o for o in outcomes if o.kind == "BAD" and not o.known_open]
    assert not bad, f"{len(bad)} of {len(outcomes)} runs ended BAD:\n\n" + "\n\n".join(o.describe() for o in bad)


def test_the_classifier_calls_a_short_answer_bad(lab, monkeypatch):
    """The oracle itself: a run whose victim really is cut short -- an operator's own signed
    cancel the harness does not expect, the answer issue #22's forged cancel used to give -- is
    BAD, with its seed and mutations in the description."""
    from rqp import control

    def m_real_cancel(ctx: Any) -> str:
        if ctx.r.hget(ctx.k("meta"), "state") in (b"running", b"paused"):
            control.cancel(ctx.r, ctx.lab.operator, ctx.victim, "ops@chaos")
            return f"rqp cancel {ctx.victim} (signed, unknown to the oracle)"
        return "(the victim had ended)"

    monkeypatch.setitem(chaos.FAMILIES, "oracle", chaos.Family("oracle", m_real_cancel))
    out = chaos.run_case(lab, "oracle", 1, 1)
    assert out.kind == "BAD" and "seed=1" in out.describe() and "rqp cancel" in out.describe(), out.describe()


def test_make_chaos_prints_how_each_run_ended(lab, capsys):
    code = chaos.main(
        ["--mutations", "8", "--per-run", "4", "--family", "sealed", "--redis-url", lab.settings.redis_url]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "8 mutations, 4 a run" in out
    tally = next(line for line in out.splitlines() if line.startswith("sealed "))
    assert sum(int(x) for x in tally.split()[1:5]) == 2, tally


#: runs ``make chaos`` (or an earlier CI run) found BAD, their seeds not among the CI seeds: kept
#: so each fixed hole stays fixed
FOUND = [
    # a pending member that is not a job id killed the scheduler (ValueError): the reclaimer now
    # drops it and records the rejection
    pytest.param("derived", (70, 89), id="derived-pending-junk"),
    # a non-UTF-8 byte in perf killed the scheduler's progress event: text() reads it as junk
    pytest.param("progress", (8,), id="progress-perf-not-utf8"),
]


@pytest.mark.parametrize(("family", "seeds"), FOUND)
def test_runs_make_chaos_found_bad_stay_fixed(lab: Any, family: str, seeds: tuple[int, ...]) -> None:
    outcomes = [chaos.run_case(lab, family, seed, PER_RUN) for seed in seeds]
    bad = [o for o in outcomes if o.kind == "BAD"]
    assert not bad, "\n\n".join(o.describe() for o in bad)


def test_a_cancelled_summary_counts_the_records_never_read(lab: Any) -> None:
    """Submissions seed 1 cancels the victim for real at tick 4, before its 120 records are read:
    the sealed summary counts the records never read as never run."""
    out = chaos.run_case(lab, "submissions", 1, PER_RUN)
    assert out.kind != "BAD", out.describe()


def test_an_emptied_audit_log_does_not_verify(lab: Any) -> None:
    """Audit seed 5 removes every entry while the chain head stays: 'rqp audit --verify' says so."""
    out = chaos.run_case(lab, "audit", 5, PER_RUN)
    assert out.kind != "BAD", out.describe()
