import pytest

from rqp.config import DEFAULT_CHUNK_SIZE, Settings
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
