"""The Redis-writer fuzzer (``tools/chaos.py``) in CI: for each family of the trust table's keys,
five seeded runs of real small workloads with four mutations each (200 mutations in all), each
run classified as exact, refused (an authentication failure named), denied (a denial of service,
counted honestly) or BAD (a silent wrong answer, a report that disagrees with the sealed summary,
a crash). No family may end BAD -- except those issue #22 lists as open today, which are
``xfail(strict=True)``: they must still end BAD, so the mark has to go when items 1-5 land.

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
#: ends twice: seeds 106 and 116 are runs ``make chaos`` found doing that (issue #22's seventh
#: reproduction), kept so the open hole stays pinned
SEEDS["chunk"] = (106, 116, 1, 2, 3)


@pytest.fixture(scope="module")
def lab(redis_server: Any, tmp_path_factory: Any) -> Iterator[Any]:
    lab = chaos.Lab(tmp_path_factory.mktemp("chaos"), redis_server.url)
    yield lab
    lab.close()


def _family(name: str) -> Any:
    family = chaos.FAMILIES[name]
    if not family.open_issue:
        return pytest.param(name, id=name)
    reason = f"issue #22 {family.open_issue}: a Redis writer gets a silent wrong answer today"
    return pytest.param(name, id=name, marks=pytest.mark.xfail(strict=True, raises=AssertionError, reason=reason))


@pytest.mark.parametrize("family", [_family(f) for f in chaos.FAMILIES])
def test_a_redis_writer_gets_no_silent_wrong_answer(lab, family):
    outcomes = [chaos.run_case(lab, family, seed, PER_RUN) for seed in SEEDS[family]]
    applied = [m for o in outcomes for m in o.mutations if not m.split(": ", 1)[1].startswith("(")]
    assert applied, f"no mutation of family {family} changed anything: the fuzzer tests nothing"
    bad = [o for o in outcomes if o.kind == "BAD"]
    assert not bad, f"{len(bad)} of {len(outcomes)} runs ended BAD:\n\n" + "\n\n".join(o.describe() for o in bad)


def test_the_classifier_calls_a_short_answer_bad(lab):
    """The oracle itself: a run whose victim really is cut short (a forged cancel, issue #22's
    first reproduction) is BAD, with its seed and mutations in the description."""
    out = chaos.run_case(lab, "control", 4, PER_RUN)
    assert out.kind == "BAD" and "seed=4" in out.describe() and "control cancel" in out.describe(), out.describe()


def test_make_chaos_prints_how_each_run_ended(lab, capsys):
    code = chaos.main(
        ["--mutations", "8", "--per-run", "4", "--family", "sealed", "--redis-url", lab.settings.redis_url]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "8 mutations, 4 a run" in out
    tally = next(line for line in out.splitlines() if line.startswith("sealed "))
    assert sum(int(x) for x in tally.split()[1:5]) == 2, tally


#: runs ``make chaos`` found BAD in a family that is asserted above (their seeds are not among
#: the CI seeds): pinned here, strict, until the fix lands -- then drop the mark
FOUND = [
    pytest.param(
        "derived",
        (70, 89),
        id="derived-pending-junk",
        marks=pytest.mark.xfail(
            strict=True,
            raises=AssertionError,
            reason="issue #22 item 7: a pending member that is not a job id kills the scheduler (ValueError)",
        ),
    ),
]


@pytest.mark.parametrize(("family", "seeds"), FOUND)
def test_runs_make_chaos_found_bad_stay_pinned(lab: Any, family: str, seeds: tuple[int, ...]) -> None:
    bad = [o for o in (chaos.run_case(lab, family, seed, PER_RUN) for seed in seeds) if o.kind == "BAD"]
    assert not bad, "\n\n".join(o.describe() for o in bad)
