"""Settings: environment names, defaults, validation errors that name the variable."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.errors import ConfigError, ExitCode
from runtime.settings import (
    ClickHouseSettings,
    Inter1Settings,
    KafkaSettings,
    LogSettings,
    SecretStr,
    StackSettings,
    load,
)


@pytest.fixture(autouse=True)
def _fresh_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.chdir(tmp_path)  # no stray .env from the project root
    for name in (
        "KAFKA_BOOTSTRAP_SERVERS",
        "CLICKHOUSE_URL",
        "INTER1_API_KEY",
        "INTER1_BASE_URL",
        "INTER1_API_VERSION",
        "LOG_LEVEL",
        "PIPELINE_STATE_DIR",
        "PIPELINE_KAFKA_PORT",
    ):
        monkeypatch.delenv(name, raising=False)
    load.cache_clear()
    yield
    load.cache_clear()


def test_defaults() -> None:
    assert load(StackSettings).state_dir == Path(".stack")
    assert load(KafkaSettings).bootstrap_servers == ""
    assert load(Inter1Settings).api_version == "v1"
    assert load(Inter1Settings).api_key is None
    assert load(LogSettings).level == "INFO"
    assert load(ClickHouseSettings).url.get_secret_value() == ""


def test_values_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker-1:9092,broker-2:9092")
    monkeypatch.setenv("INTER1_API_VERSION", "v2")
    monkeypatch.setenv("INTER1_API_KEY", "ih_live_secret")
    assert load(KafkaSettings).bootstrap_servers == "broker-1:9092,broker-2:9092"
    inter1 = load(Inter1Settings)
    assert inter1.api_version == "v2"
    assert inter1.api_key is not None
    assert inter1.api_key.get_secret_value() == "ih_live_secret"
    assert "ih_live_secret" not in repr(inter1)


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("PIPELINE_KAFKA_PORT=19999\n", encoding="utf-8")
    assert load(StackSettings).kafka_port == 19999


def test_invalid_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INTER1_API_VERSION", "v9")
    with pytest.raises(ConfigError) as info:
        load(Inter1Settings)
    assert str(info.value) == (
        "invalid setting(s): INTER1_API_VERSION: 'v9' is not one of 'v1', 'v2'"
    )
    assert info.value.exit_code == ExitCode.CONFIG


def test_invalid_base_url_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INTER1_BASE_URL", "localhost:8080")
    with pytest.raises(ConfigError) as info:
        load(Inter1Settings)
    assert str(info.value) == (
        "invalid setting(s): INTER1_BASE_URL: must start with http://, https://, ws:// or wss://"
    )


def test_invalid_port_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_KAFKA_PORT", "70000")
    with pytest.raises(ConfigError) as info:
        load(StackSettings)
    assert str(info.value) == (
        "invalid setting(s): PIPELINE_KAFKA_PORT: expected an integer <= 65535 (got '70000')"
    )


def test_the_environment_wins_over_the_dotenv_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text(
        "PIPELINE_KAFKA_PORT=19999\nKAFKA_BOOTSTRAP_SERVERS=from-file:9092\n", encoding="utf-8"
    )
    monkeypatch.setenv("PIPELINE_KAFKA_PORT", "29999")
    assert load(StackSettings).kafka_port == 29999
    assert load(KafkaSettings).bootstrap_servers == "from-file:9092"


def test_variable_names_match_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("log_level", "DEBUG")
    monkeypatch.delenv("LOG_LEVEL", raising=False)
    assert load(LogSettings).level == "DEBUG"


def test_types_and_bounds_are_converted_and_checked() -> None:
    stack = StackSettings.from_env(
        {"PIPELINE_KAFKA_HEAP_MB": " 1024\n", "PIPELINE_STATE_DIR": "/s"}
    )
    assert (stack.kafka_heap_mb, stack.state_dir) == (1024, Path("/s"))
    assert LogSettings.from_env({"LOG_LEVEL": "DEBUG "}).level == "DEBUG"
    with pytest.raises(ConfigError) as info:
        StackSettings.from_env({"PIPELINE_KAFKA_HEAP_MB": "64"})
    assert str(info.value) == (
        "invalid setting(s): PIPELINE_KAFKA_HEAP_MB: expected an integer >= 128 (got '64')"
    )
    with pytest.raises(ConfigError) as info:
        StackSettings.from_env({"PIPELINE_KAFKA_START_TIMEOUT_S": "soon"})
    assert str(info.value) == (
        "invalid setting(s): PIPELINE_KAFKA_START_TIMEOUT_S: expected a number (got 'soon')"
    )


def test_secrets_are_masked_and_replace_keeps_the_rest() -> None:
    kafka = KafkaSettings.from_env({"KAFKA_SASL_PASSWORD": "hunter2", "KAFKA_CLIENT_ID": "c"})
    assert kafka.sasl_password == SecretStr("hunter2")
    assert "hunter2" not in repr(kafka)
    assert str(kafka.sasl_password) == "**********"
    moved = kafka.replace(bootstrap_servers="b:9092")
    assert (moved.bootstrap_servers, moved.client_id, moved.sasl_password) == (
        "b:9092",
        "c",
        SecretStr("hunter2"),
    )
    assert kafka.bootstrap_servers == ""
