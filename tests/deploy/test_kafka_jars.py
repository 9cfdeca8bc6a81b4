"""The broker jar cache: idempotent fetch keyed by the pom's hash, and Maven's failures."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from deploy.exceptions import JarFetchError, MavenNotFoundError
from deploy.kafka_jars import POM_FILE, ensure_jars, jars_dir, jars_ready
from runtime.errors import ExitCode


def _java_home() -> Path:
    java = shutil.which("java")
    assert java is not None
    return Path(java).resolve().parent.parent


def test_cached_jars_are_not_fetched_again(stack_state_dir: Path, kafka_jars: Path) -> None:
    cache = ensure_jars(stack_state_dir)
    assert cache.fetched is False
    assert cache.directory == jars_dir(stack_state_dir)
    assert cache.jar_count == len(list(kafka_jars.glob("*.jar")))
    assert (kafka_jars / "kafka_2.13-4.1.1.jar").is_file()
    assert (kafka_jars / "kafka-clients-4.1.1.jar").is_file()
    assert (kafka_jars / "log4j-core-2.24.3.jar").is_file()
    assert jars_ready(stack_state_dir)


def test_edited_pom_fetches_again(tmp_path: Path, kafka_jars: Path) -> None:
    pom = tmp_path / "pom.xml"
    pom.write_text(POM_FILE.read_text() + "<!-- edited -->\n")
    state = tmp_path / "state"
    assert not jars_ready(state, pom)
    # Offline: resolves from the local Maven repository that filled the project cache.
    first = ensure_jars(state, pom=pom, maven_args=("-o",))
    assert first.fetched is True
    assert sorted(p.name for p in first.directory.glob("*.jar")) == sorted(
        p.name for p in kafka_jars.glob("*.jar")
    )
    assert ensure_jars(state, pom=pom).fetched is False
    assert not jars_ready(state)  # the project's pom has another hash
    assert [p.name for p in (state / "kafka").iterdir() if p.name.startswith("jars")] == ["jars"]


def test_maven_failure_shows_its_error_lines(tmp_path: Path) -> None:
    state = tmp_path / "state"
    empty_repo = tmp_path / "m2"
    with pytest.raises(JarFetchError) as caught:
        ensure_jars(state, maven_args=("-o", f"-Dmaven.repo.local={empty_repo}"))
    lines = str(caught.value).splitlines()
    assert lines[0] == "mvn could not fetch the Kafka broker jars from Maven Central (exit 1):"
    # Maven's own wording varies by version: assert its stable part, and that only its
    # [ERROR] lines are kept, without the generic advice that follows every failure.
    assert lines[1].startswith("[ERROR] No plugin found for prefix 'dependency'")
    assert f"local ({empty_repo})" in lines[1]
    assert all(line.startswith("[ERROR] ") for line in lines[1:])
    advice = ("Re-run Maven", "To see the full stack trace", "For more information", "[Help ")
    assert not [line for line in lines[1:] if line[8:].startswith(advice)]
    assert caught.value.retriable is True
    assert caught.value.exit_code == ExitCode.UNAVAILABLE
    assert not (state / "kafka" / "jars").exists()
    assert [p.name for p in (state / "kafka").iterdir()] == [".jars.lock"]


def test_maven_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("JAVA_HOME", str(_java_home()))
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(MavenNotFoundError) as caught:
        ensure_jars(tmp_path / "state")
    assert str(caught.value) == (
        "Maven (mvn) not found on PATH: install it (e.g. `apt-get install maven`) "
        "to fetch the Kafka broker jars"
    )
