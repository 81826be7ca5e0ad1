from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from rqp.config import DEFAULT_CHUNK_SIZE, DEFAULT_REMOTE_CHUNK_SIZE, Settings, settings_from_env
from rqp.errors import ConfigError


def test_defaults_and_env_override():
    s = Settings.load(env={})
    assert s.chunk_size == DEFAULT_CHUNK_SIZE and s.queue_url == "redis"
    s = Settings.load(env={"RQP_CHUNK_SIZE": "64", "RQP_ADAPTIVE_CHUNKS": "false", "RQP_REDIS_URL": "redis://h:1/2"})
    assert (s.chunk_size, s.adaptive_chunks, s.redis_url) == (64, False, "redis://h:1/2")


def test_file_then_env_then_overrides(tmp_path):
    f = tmp_path / "rqp.toml"
    f.write_text("[rqp]\nchunk_size = 32\nmax_attempts = 5\n")
    s = Settings.load(env={"RQP_CONFIG": str(f), "RQP_MAX_ATTEMPTS": "7"}, chunk_size=8)
    assert (s.chunk_size, s.max_attempts) == (8, 7)
    assert str(f) in s.origin and "RQP_MAX_ATTEMPTS" in s.origin


@pytest.mark.parametrize(
    "env, message",
    [
        ({"RQP_CHUNK_SIZE": "many"}, "RQP_CHUNK_SIZE must be an integer, got 'many'"),
        ({"RQP_CHUNK_SIZE": "0"}, "RQP_CHUNK_SIZE must be at least 1"),
        ({"RQP_ADAPTIVE_CHUNKS": "perhaps"}, "RQP_ADAPTIVE_CHUNKS must be true or false"),
        ({"RQP_REDIS_URL": "http://x"}, "RQP_REDIS_URL must start with redis://"),
        ({"RQP_CHUNK_MIN": "100", "RQP_CHUNK_MAX": "10"}, "RQP_CHUNK_MIN (100) is larger than RQP_CHUNK_MAX (10)"),
        ({"RQP_STATUS_QUEUE": "a b"}, "RQP_STATUS_QUEUE must be letters"),
    ],
)
def test_invalid_settings_name_the_variable(env, message):
    with pytest.raises(ConfigError) as e:
        Settings.load(env=env)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_unknown_key_in_file_is_an_error(tmp_path):
    f = tmp_path / "rqp.toml"
    f.write_text("chunk_sise = 3\n")
    with pytest.raises(ConfigError, match=r"unknown setting.*chunk_sise"):
        Settings.load(f, env={})


def test_password_is_masked_in_messages():
    with pytest.raises(ConfigError) as err:
        Settings.from_url("redis://user:hunter2@db:6379/0")
    assert "hunter2" not in str(err.value) and "***" in str(err.value)


def test_a_password_in_the_redis_url_is_refused():
    from rqp.config import Settings
    from rqp.errors import ConfigError

    with pytest.raises(
        ConfigError, match=r"RQP_REDIS_URL redis://rqp:\*\*\*@redis:6379/0 carries a password.*RQP_REDIS_PASSWORD_FILE"
    ):
        Settings.from_url("redis://rqp:secret@redis:6379/0")
    assert Settings.from_url("redis://rqp@redis:6379/0").redis_url.startswith("redis://rqp@")  # a user name is fine


@dataclass(frozen=True)
class _RoleSettings:
    """A role's own settings, as the console and the metrics logger declare theirs."""

    port: int = 1
    ratio: float = 0.5
    key_file: Path | None = None
    name: str | None = None


_ROLE_ENV = {
    "port": "RQP_ROLE_PORT",
    "ratio": "RQP_ROLE_RATIO",
    "key_file": "RQP_ROLE_KEY_FILE",
    "name": "RQP_ROLE_NAME",
}


def test_settings_from_env_reads_the_roles_variables_then_overrides():
    env = {"RQP_ROLE_PORT": "8080", "RQP_ROLE_RATIO": "", "RQP_ROLE_KEY_FILE": "~/k", "RQP_PORT": "9"}
    s = settings_from_env(_RoleSettings, _ROLE_ENV, what="role", env=env, overrides={"name": "x", "ratio": None})
    assert s == _RoleSettings(port=8080, ratio=0.5, key_file=Path("~/k").expanduser(), name="x")


@pytest.mark.parametrize(
    ("env", "overrides", "message"),
    [
        ({"RQP_ROLE_PORT": "http"}, {}, "RQP_ROLE_PORT must be an integer, got 'http'"),
        ({"RQP_ROLE_RATIO": "half"}, {}, "RQP_ROLE_RATIO must be a number, got 'half'"),
        ({}, {"port": True}, "RQP_ROLE_PORT must be an integer, got True"),
        ({}, {"colour": "red"}, "unknown role setting 'colour'; known: key_file, name, port, ratio"),
    ],
)
def test_settings_from_env_errors_name_the_roles_own_variable(env, overrides, message):
    with pytest.raises(ConfigError) as info:
        settings_from_env(_RoleSettings, _ROLE_ENV, what="role", env=env, overrides=overrides)
    assert str(info.value) == message


def test_settings_from_env_words_kinds_as_the_role_asks():
    with pytest.raises(ConfigError, match=r"^RQP_ROLE_RATIO must be a float, got 'half'$"):
        settings_from_env(_RoleSettings, _ROLE_ENV, what="role", env={"RQP_ROLE_RATIO": "half"}, kinds={})


@pytest.mark.parametrize("given", ["Spot", "SPOT", " spot "])
def test_vm_priority_takes_azures_spelling(given):
    """Azure names the scale set's priority "Spot" / "Regular"; a VM's setting copied from there works."""
    assert Settings.load(env={"RQP_VM_PRIORITY": given}).vm_priority == "spot"
    with pytest.raises(ConfigError, match="RQP_VM_PRIORITY must be spot or regular"):
        Settings.load(env={"RQP_VM_PRIORITY": "lowpri"})


def test_an_azure_blob_store_starts_with_bigger_chunks_unless_told():
    """Each chunk costs two requests to Azure (its part, its status message): a workload there
    starts with chunks of ``DEFAULT_REMOTE_CHUNK_SIZE``; a local store, or a size set, is as before."""
    azure = {"RQP_BLOB_URL": "azure-blob://acct/cont"}
    assert DEFAULT_REMOTE_CHUNK_SIZE > DEFAULT_CHUNK_SIZE
    s = Settings.load(env=azure)
    assert (s.chunk_size, s.source("chunk_size")) == (DEFAULT_REMOTE_CHUNK_SIZE, "default")
    assert Settings.load(env={"RQP_BLOB_URL": "azblob://acct/cont"}).chunk_size == DEFAULT_REMOTE_CHUNK_SIZE
    assert Settings.load(env={"RQP_BLOB_URL": "file:///var/rqp"}).chunk_size == DEFAULT_CHUNK_SIZE
    assert Settings.load(env={**azure, "RQP_CHUNK_SIZE": "64"}).chunk_size == 64
    assert Settings.load(env=azure, chunk_size=32).chunk_size == 32
    assert Settings.load(env={**azure, "RQP_CHUNK_MAX": "300"}).chunk_size == 300  # within the bounds set
