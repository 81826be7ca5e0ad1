"""A worker's workload cache against the attacker who queues jobs naming workloads: each one
is unwrapped once, one that fails to open is refused from memory, and failed opens as a whole
are rate limited -- counted on a real RSA key provider, with a clock the test owns."""

from __future__ import annotations

import pytest

from rqp.errors import WrongKeyError
from rqp.keys import LocalKeyProvider
from rqp.workload import pack
from rqp_processor.context import FAILED_OPEN_SECONDS, ContextCache, FailedOpenLimiter


class CountingKeys(LocalKeyProvider):
    """The real provider, counting the unwraps it does (what Key Vault would bill and throttle)."""

    unwraps = 0

    def unwrap(self, wrapped):
        self.unwraps += 1
        return super().unwrap(wrapped)


class Clock:
    """Time the test moves: ``sleep`` advances it and records how long the cache chose to wait."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def setup(world, other_kek):
    keys = CountingKeys(private_key_file=world.settings.kek_file)
    good = world.pack("good", [{"n": 1}])
    # signed by the trusted submitter, but its key wrapped for another deployment's KEK: it gets
    # as far as the unwrap, and fails there
    strangers = []
    for i in range(30):
        data = world.root / "d.jsonl"
        data.write_text('{"n": 1}\n')
        pack(world.store, LocalKeyProvider(public_key_file=other_kek[1]), f"stranger-{i}", data,
             world.root / "good.py", signer=world.signer.key)  # fmt: skip
        strangers.append(f"stranger-{i}")
    clock = Clock()
    cache = ContextCache(
        world.store, keys, world.trust(), lambda wid: None,
        limiter=FailedOpenLimiter(burst=10, per_minute=12, clock=clock, sleep=clock.sleep), clock=clock,
    )  # fmt: skip
    return cache, keys, clock, good, strangers


def test_a_workload_is_unwrapped_once_per_worker(setup):
    cache, keys, _clock, good, _ = setup
    for _ in range(100):
        assert cache.get(good).workload.id == good
    assert keys.unwraps == 1


def test_a_workload_that_fails_to_open_is_refused_from_memory(setup):
    cache, keys, clock, _good, strangers = setup
    errors = set()
    for _ in range(50):  # fifty forged jobs naming it
        with pytest.raises(WrongKeyError) as err:
            cache.get(strangers[0])
        errors.add(str(err.value))
    assert keys.unwraps == 1 and len(errors) == 1
    clock.now += FAILED_OPEN_SECONDS + 1  # after a while it is tried again (it may have been fixed)
    with pytest.raises(WrongKeyError):
        cache.get(strangers[0])
    assert keys.unwraps == 2


def test_failed_opens_are_rate_limited(setup):
    cache, keys, clock, good, strangers = setup
    start = clock.now
    for wid in strangers:  # thirty different workloads that fail to open
        with pytest.raises(WrongKeyError):
            cache.get(wid)
    assert keys.unwraps == 30 and clock.slept[0] == pytest.approx(5.0)
    # the burst of 10 free, then 12 a minute: 20 more take 100 s of waiting
    assert clock.now - start == pytest.approx(100.0)
    assert len(clock.slept) == 20
    cache.get(good)  # while the flood lasts, a workload that opens waits its turn too (never fails)
    assert keys.unwraps == 31 and len(clock.slept) == 21
    clock.now += 600  # the flood is over: the bucket refills
    cache._cache.clear()
    cache.get(good)
    assert len(clock.slept) == 21
