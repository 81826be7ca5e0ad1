"""The console's small parts on their own: settings, the login's checks, error categories, the
throughput history and the memo."""

from __future__ import annotations

import pytest

from rqp.errors import ConfigError
from rqp_console.auth import Credentials, LoginLimiter
from rqp_console.cache import TtlCache
from rqp_console.failures import category, pattern
from rqp_console.settings import ConsoleSettings
from rqp_console.throughput import ThroughputHistory


def test_settings_from_the_environment_and_their_refusals(tmp_path):
    s = ConsoleSettings.from_env({"RQP_CONSOLE_PORT": "9999", "RQP_CONSOLE_ALLOWED_HOSTS": "Console.example, ops"})
    assert (s.bind, s.port, s.user, s.actions_enabled) == ("127.0.0.1", 9999, "admin", False)
    assert {"console.example", "ops", "127.0.0.1", "localhost"} <= s.hosts
    assert "0.0.0.0" not in ConsoleSettings(bind="0.0.0.0").hosts
    cases = {
        "RQP_CONSOLE_PORT must be a TCP port": {"RQP_CONSOLE_PORT": "70000"},
        "RQP_CONSOLE_PORT must be an integer, got 'x'": {"RQP_CONSOLE_PORT": "x"},
        "RQP_CONSOLE_PASSWORD is not read": {"RQP_CONSOLE_PASSWORD": "secret-in-env"},
        "RQP_CONSOLE_ACTIONS_REDIS_URL carries a password": {"RQP_CONSOLE_ACTIONS_REDIS_URL": "redis://u:pw@h:6379/0"},
        "RQP_CONSOLE_ACTIONS_PASSWORD_FILE is set but": {"RQP_CONSOLE_ACTIONS_PASSWORD_FILE": "/x"},
        "RQP_CONSOLE_REFRESH must be 0.5 to 30 seconds": {"RQP_CONSOLE_REFRESH": "0.1"},
    }
    for message, env in cases.items():
        with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
            ConsoleSettings.from_env(env)
    pw = tmp_path / "pw"
    pw.write_text("  a-long-enough-password \n")
    assert ConsoleSettings(password_file=pw).read_password() == "a-long-enough-password"
    with pytest.raises(ConfigError, match="cannot be read"):
        ConsoleSettings(password_file=tmp_path / "missing").read_password()


def test_credentials_need_both_the_user_and_the_password():
    creds = Credentials("ops", "correct horse battery")
    assert creds.check("ops", "correct horse battery")
    assert not creds.check("ops", "correct horse batterY")
    assert not creds.check("admin", "correct horse battery")
    assert not creds.check("", "")


def test_the_login_limiter_counts_per_address_and_in_total():
    lim = LoginLimiter(per_client=2, window=60)
    assert lim.wait_seconds("a", now=0) == 0
    lim.failed("a", now=0)
    lim.failed("a", now=10)
    assert lim.wait_seconds("a", now=11) == pytest.approx(49)
    assert lim.wait_seconds("b", now=11) == 0  # another address is not held back
    assert lim.wait_seconds("a", now=60.5) == 0  # the first failure left the window
    lim.succeeded("a")
    for i in range(20):  # many addresses, one failure each: the total limit (10 x 2) holds them all
        lim.failed(f"x{i}", now=100)
    assert lim.wait_seconds("fresh", now=101) == pytest.approx(59)


def test_error_categories():
    assert category("process() raised ValueError: amount 3 is negative (line 10)") == "ValueError"
    assert category("process() raised json.decoder.JSONDecodeError: x") == "json.decoder.JSONDecodeError"
    assert category("timed out after 300 s (RQP_RECORD_TIMEOUT); the script process was replaced") == (
        "timed out (RQP_RECORD_TIMEOUT)"
    )
    assert category("the script process died (SIGKILL) while processing this record; it was replaced") == (
        "script process died"
    )
    assert category("malformed record: not valid JSON (Expecting value)") == "malformed record"
    assert category("record 7 of workload w failed authentication: tampered with") == "failed authentication (tampered)"
    assert category(None) == "no reason recorded"


def test_message_patterns_take_out_what_varies_by_record():
    """Issue #24 item 7: one exception type raised for two reasons is two patterns."""
    negative = [pattern(f"process() raised ValueError: negative amount {n} in TX-{n:04d} (line 7)") for n in (-3, -250)]
    assert negative == ["negative amount # in TX-# (line #)"] * 2
    iso = pattern("process() raised ValueError: Invalid isoformat string: '2026/11/05' (line 8)")
    assert iso == "Invalid isoformat string: '…' (line #)" != negative[0]
    # a message that is only the quoted value (a KeyError's key) is what tells two failures apart
    assert pattern("process() raised KeyError: 'customer' (line 12)") == "'customer' (line #)"
    assert pattern("process() raised KeyError: 'amount' (line 12)") == "'amount' (line #)"
    assert pattern('process() raised KeyError: "it\'s" (line 3)') == '"it\'s" (line #)'
    assert pattern(None) == "" and len(pattern("x" * 500)) <= 121


def test_throughput_history_rates_and_rounds():
    h = ThroughputHistory(min_step=1.0)
    h.add("w", now=100.0, finished=0, started_at=90.0, live=True)  # seeded at its start
    h.add("w", now=100.5, finished=50, started_at=90.0, live=True)  # too soon: not kept
    h.add("w", now=102.0, finished=200, started_at=90.0, live=True)
    h.add("w", now=104.0, finished=600, started_at=90.0, live=True)
    rates = h.rates("w", window=2.0)
    assert [t for t, _ in rates] == [100.0, 102.0, 104.0]
    assert rates[-1][1] == pytest.approx(200.0)  # (600 - 200) / 2 s
    assert h.recent_rate("w", window=30) == pytest.approx(600 / 14)
    h.add("w", now=106.0, finished=10, started_at=90.0, live=True)  # a new round restarts the count
    assert h.rates("w") == []
    # a finished workload's last point is dated when it ended, not when the console looked
    h.add("done", now=500.0, finished=90, started_at=400.0, live=False, ended=430.0)
    assert h.rates("done") == [(430.0, pytest.approx(3.0))]


def test_the_memo_computes_once_per_ttl():
    calls = []
    cache = TtlCache()
    assert cache.get("k", 60, lambda: calls.append(1) or len(calls)) == 1
    assert cache.get("k", 60, lambda: calls.append(1) or len(calls)) == 1
    cache.invalidate("k")
    assert cache.get("k", 60, lambda: calls.append(1) or len(calls)) == 2
    assert cache.get("other", 0, lambda: "x") == "x"
