"""The broker's jar cache: Apache Kafka and its dependencies, fetched from Maven Central by Maven.

``deploy/kafka/pom.xml`` names the broker version. The jars land in
``$PIPELINE_STATE_DIR/kafka/jars``; a marker there records the pom's SHA-256, so a
second fetch with the same pom does nothing, and editing the pom fetches again.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import structlog

from deploy.exceptions import JarFetchError, MavenNotFoundError
from deploy.java import find_java
from runtime.logs import get_logger

__all__ = ["POM_FILE", "JarCache", "ensure_jars", "jars_dir", "jars_ready"]

POM_FILE = Path(__file__).resolve().parent / "kafka" / "pom.xml"
_MARKER = ".pom-sha256"
_BROKER_JAR = "kafka_2.13-*.jar"
_FETCH_TIMEOUT_S = 900.0
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# Maven's generic advice after every failure; the real error lines come before it.
_BOILERPLATE = (
    "To see the full stack trace",
    "Re-run Maven using",
    "For more information about the errors",
    "[Help ",
)


def _log() -> structlog.stdlib.BoundLogger:
    # Looked up per call: a logger bound at import time would miss configure_logging().
    return get_logger("deploy.kafka_jars")


@dataclass(frozen=True)
class JarCache:
    """The jar cache after :func:`ensure_jars`: where it is and whether this call fetched it."""

    directory: Path
    jar_count: int
    fetched: bool
    elapsed_s: float

    @property
    def classpath(self) -> str:
        """The ``java -cp`` value for the cache (a directory wildcard)."""
        return f"{self.directory}{os.sep}*"


def jars_dir(state_dir: Path) -> Path:
    """Where the broker jars live under the state directory."""
    return state_dir / "kafka" / "jars"


def _pom_digest(pom: Path) -> str:
    return hashlib.sha256(pom.read_bytes()).hexdigest()


def jars_ready(state_dir: Path, pom: Path = POM_FILE) -> bool:
    """Whether the cache holds a complete fetch for the current ``pom``."""
    directory = jars_dir(state_dir)
    marker = directory / _MARKER
    try:
        recorded = marker.read_text(encoding="utf-8").strip()
    except OSError:
        return False
    return recorded == _pom_digest(pom) and any(directory.glob(_BROKER_JAR))


@contextmanager
def _fetch_lock(parent: Path) -> Iterator[None]:
    parent.mkdir(parents=True, exist_ok=True)
    with (parent / ".jars.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _maven_errors(output: str) -> str:
    lines = [_ANSI.sub("", line).rstrip() for line in output.splitlines()]
    errors = [
        line
        for line in lines
        if line.startswith("[ERROR] ") and not line[8:].startswith(_BOILERPLATE)
    ]
    return "\n".join(errors or [line for line in lines if line][-10:])


def ensure_jars(
    state_dir: Path, *, pom: Path = POM_FILE, maven_args: Sequence[str] = ()
) -> JarCache:
    """Fetch the broker jars with Maven unless the cache already matches ``pom``.

    Args:
        state_dir: the stack's state directory (``$PIPELINE_STATE_DIR``).
        pom: the pom naming the broker version.
        maven_args: extra ``mvn`` arguments (e.g. ``-o`` for offline).

    Raises:
        JavaNotFoundError: no Java runtime (Maven needs one too).
        MavenNotFoundError: no ``mvn`` on PATH.
        JarFetchError: Maven failed; the message holds its ``[ERROR]`` lines.
    """
    started = time.monotonic()
    directory = jars_dir(state_dir.absolute())  # mvn resolves relative paths against the pom
    with _fetch_lock(directory.parent):
        if jars_ready(state_dir, pom):
            count = len(list(directory.glob("*.jar")))
            return JarCache(directory, count, fetched=False, elapsed_s=time.monotonic() - started)
        find_java()
        mvn = shutil.which("mvn")
        if mvn is None:
            raise MavenNotFoundError(
                "Maven (mvn) not found on PATH: install it (e.g. `apt-get install maven`) "
                "to fetch the Kafka broker jars"
            )
        partial = directory.with_name(f"jars.partial-{os.getpid()}")
        shutil.rmtree(partial, ignore_errors=True)
        command = [
            mvn,
            "-B",
            "-q",
            "-Dstyle.color=never",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={partial}",
            "-DincludeScope=runtime",
            *maven_args,
        ]
        _log().info("fetching kafka jars", pom=str(pom), directory=str(directory))
        try:
            done = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=_FETCH_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            shutil.rmtree(partial, ignore_errors=True)
            raise JarFetchError(
                f"mvn did not finish fetching the Kafka jars within {_FETCH_TIMEOUT_S:.0f} s"
            ) from exc
        if done.returncode == 0 and not any(partial.glob(_BROKER_JAR)):
            shutil.rmtree(partial, ignore_errors=True)
            raise JarFetchError(f"mvn succeeded but copied no {_BROKER_JAR} into {partial}")
        if done.returncode != 0:
            shutil.rmtree(partial, ignore_errors=True)
            raise JarFetchError(
                f"mvn could not fetch the Kafka broker jars from Maven Central "
                f"(exit {done.returncode}):\n{_maven_errors(done.stdout + done.stderr)}"
            )
        (partial / _MARKER).write_text(_pom_digest(pom) + "\n", encoding="utf-8")
        shutil.rmtree(directory, ignore_errors=True)
        partial.rename(directory)
    count = len(list(directory.glob("*.jar")))
    elapsed = time.monotonic() - started
    _log().info("fetched kafka jars", jars=count, elapsed_s=round(elapsed, 1))
    return JarCache(directory, count, fetched=True, elapsed_s=elapsed)
