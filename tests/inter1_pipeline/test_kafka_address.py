"""The command line finds the local stack's broker; runtime never does."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from inter1_pipeline.kafka_address import kafka_settings, with_bootstrap
from runtime.errors import ConfigError, ExitCode
from runtime.kafka import bootstrap_servers, client_options
from runtime.settings import KafkaSettings, load


@pytest.fixture
def no_bootstrap_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """KAFKA_BOOTSTRAP_SERVERS unset, an empty working directory (no .env); yields it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    load.cache_clear()
    yield tmp_path
    load.cache_clear()


def test_configured_servers_win(
    no_bootstrap_setting: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka-1:9092,kafka-2:9092")
    monkeypatch.setenv("PIPELINE_STATE_DIR", str(no_bootstrap_setting / "no-stack"))
    assert kafka_settings().bootstrap_servers == "kafka-1:9092,kafka-2:9092"


def test_discovers_the_running_local_stack(
    no_bootstrap_setting: Path,
    kafka_stack_dir: Path,
    kafka_bootstrap: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PIPELINE_STATE_DIR", str(kafka_stack_dir))
    settings = kafka_settings()
    assert settings.bootstrap_servers == kafka_bootstrap
    assert client_options(settings)["bootstrap_servers"] == kafka_bootstrap
    # runtime itself never falls back, even with a local broker running.
    with pytest.raises(ConfigError) as caught:
        bootstrap_servers()
    assert str(caught.value) == (
        "KAFKA_BOOTSTRAP_SERVERS is not set: set it to the cluster's bootstrap servers "
        "(host:port[,host:port...])"
    )
    assert caught.value.exit_code == ExitCode.CONFIG


def test_no_setting_and_no_local_stack(
    no_bootstrap_setting: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = no_bootstrap_setting / "stack"
    monkeypatch.setenv("PIPELINE_STATE_DIR", str(state))
    with pytest.raises(ConfigError) as caught:
        kafka_settings()
    assert str(caught.value) == (
        f"KAFKA_BOOTSTRAP_SERVERS is not set and the local broker is not running (state dir "
        f"{state}): start it with `inter1-pipeline stack up` or set KAFKA_BOOTSTRAP_SERVERS"
    )


def test_with_bootstrap_keeps_the_other_settings(no_bootstrap_setting: Path) -> None:
    settings = KafkaSettings(client_id="worker-7", max_record_bytes=1024)
    changed = with_bootstrap(settings, "127.0.0.1:9092")
    assert (changed.bootstrap_servers, changed.client_id, changed.max_record_bytes) == (
        "127.0.0.1:9092",
        "worker-7",
        1024,
    )
    assert settings.bootstrap_servers == ""


@pytest.mark.parametrize("command", ["sink", "session-worker", "cues"])
def test_long_running_commands_exit_69_naming_an_unreachable_broker(
    command: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "PIPELINE_STATE_DIR": str(tmp_path / "state"),
        "LOG_LEVEL": "ERROR",
    }
    done = subprocess.run(
        [str(Path(sys.executable).with_name("inter1-pipeline")), command],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == ExitCode.UNAVAILABLE, done.stderr[-2000:]
    # aiokafka logs its own connection errors first; the command's one-line error is last,
    # without a traceback
    last_line = done.stderr.splitlines()[-1]
    assert last_line.startswith("error: Kafka at 127.0.0.1:1 is not reachable: "), last_line
    assert "Traceback" not in done.stderr
