"""Finding the machine's Java runtime (``$JAVA_HOME/bin/java``, else ``java`` on ``PATH``)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from deploy.exceptions import JavaNotFoundError, JavaVersionError

__all__ = ["MIN_JAVA_MAJOR", "find_java", "java_major_version"]

MIN_JAVA_MAJOR = 17
_INSTALL_HINT = "install a Java 17+ runtime (e.g. `apt-get install openjdk-17-jre-headless`)"
_VERSION = re.compile(r'version "(?P<major>\d+)(?:\.(?P<minor>\d+))?')


def find_java() -> Path:
    """The ``java`` executable: ``$JAVA_HOME/bin/java`` when JAVA_HOME is set, else from PATH.

    Raises:
        JavaNotFoundError: JAVA_HOME points nowhere useful, or no java on PATH.
    """
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if os.access(candidate, os.X_OK):
            return candidate
        raise JavaNotFoundError(
            f"Java not found: JAVA_HOME={java_home} has no bin/java; "
            f"fix or unset JAVA_HOME, or {_INSTALL_HINT}"
        )
    found = shutil.which("java")
    if found is None:
        raise JavaNotFoundError(f"Java not found on PATH and JAVA_HOME is not set: {_INSTALL_HINT}")
    return Path(found)


def java_major_version(java: Path) -> int:
    """The major version of ``java`` (``1.8`` counts as 8), checked to be at least 17.

    Raises:
        JavaNotFoundError: the executable cannot be run.
        JavaVersionError: it is older than 17 or its version cannot be read.
    """
    try:
        done = subprocess.run(
            [str(java), "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise JavaNotFoundError(f"Java at {java} cannot be run: {exc}") from exc
    match = _VERSION.search(done.stderr + done.stdout)
    if match is None:
        raise JavaVersionError(f"cannot read the version of {java}: {done.stderr.strip()!r}")
    major = int(match["major"])
    if major == 1 and match["minor"]:
        major = int(match["minor"])
    if major < MIN_JAVA_MAJOR:
        raise JavaVersionError(f"Java {major} at {java} is too old for Kafka 4: {_INSTALL_HINT}")
    return major
