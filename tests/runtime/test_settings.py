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
        "invalid setting(s): INTER1_API_VERSION: Input should be 'v1' or 'v2'"
    )
    assert info.value.exit_code == ExitCode.CONFIG


def test_invalid_base_url_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INTER1_BASE_URL", "localhost:8080")
    with pytest.raises(ConfigError) as info:
        load(Inter1Settings)
    assert str(info.value) == (
        "invalid setting(s): INTER1_BASE_URL: Value error, "
        "must start with http://, https://, ws:// or wss://"
    )


def test_invalid_port_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_KAFKA_PORT", "70000")
    with pytest.raises(ConfigError, match=r"^invalid setting\(s\): PIPELINE_KAFKA_PORT: "):
        load(StackSettings)
