"""The Dockerfile: hadolint (the Dockerfile linter, from its PyPI wheel) and the image's contract.

No container engine runs here; the image is checked as written: stages and base images,
what is copied and installed, the non-root user, the writable paths, the entry point.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from deploy_files import PIPELINE_UID, ROOT, dockerfile

HADOLINT = Path(sys.executable).with_name("hadolint")


def _hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(HADOLINT), "--no-color", "--failure-threshold", "style", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )


def _instructions(name: str) -> list[str]:
    return [s["value"] for s in dockerfile().structure if s["instruction"] == name]


def _packages() -> list[str]:
    with (ROOT / "pyproject.toml").open("rb") as handle:
        include = tomllib.load(handle)["tool"]["setuptools"]["packages"]["find"]["include"]
    return [pattern.rstrip("*") for pattern in include]


def test_hadolint_finds_nothing() -> None:
    result = _hadolint(ROOT / "Dockerfile")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_hadolint_flags_a_careless_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install chdb\nUSER root\n", encoding="utf-8")
    result = _hadolint(bad)
    assert result.returncode == 1
    codes = set(re.findall(r"\b(DL\d{4})\b", result.stdout))
    # latest tag, unpinned pip install, pip cache kept, root user, non-numeric user
    assert codes == {"DL3007", "DL3013", "DL3042", "DL3002", "DL3066"}


def test_stages_use_the_pinned_python_that_pyproject_requires() -> None:
    with (ROOT / "pyproject.toml").open("rb") as handle:
        requires = tomllib.load(handle)["project"]["requires-python"]
    minimum = re.fullmatch(r">=(\d+\.\d+)", requires)
    assert minimum is not None
    froms = _instructions("FROM")
    assert len(froms) == 2
    for value in froms:
        match = re.fullmatch(r"python:(\d+\.\d+)\.\d+-slim-\w+ AS (build|runtime)", value)
        assert match is not None, value
        assert match.group(1) == minimum.group(1)
    assert [v.split(" AS ")[1] for v in froms] == ["build", "runtime"]
    assert dockerfile().baseimage == froms[1].split(" AS ")[0]


def test_the_package_is_installed_from_the_copied_source() -> None:
    copies = _instructions("COPY")
    copied = {value.split()[0] for value in copies if not value.startswith("--from")}
    assert copied == {"pyproject.toml", *_packages()}
    assert "pyproject.toml README.md ./" in copies
    (install,) = [v for v in _instructions("RUN") if "pip install" in v]
    assert re.search(r"pip install --no-cache-dir \.(\s|$)", install)
    assert copies[-1] == "--from=build /opt/venv /opt/venv"
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split("\n")
    rules = [line.strip() for line in ignored if line.strip() and not line.startswith("#")]
    assert rules[0] == "*"
    assert {r[1:].rstrip("/") for r in rules if r.startswith("!")} == {
        "pyproject.toml",
        "README.md",
        *_packages(),
    }
    assert "deploy/secrets/" in rules


def test_runs_non_root_with_writable_state_only_on_volumes() -> None:
    parser = dockerfile()
    assert _instructions("USER") == [f"{PIPELINE_UID}:{PIPELINE_UID}"]
    assert parser.envs["PIPELINE_STATE_DIR"] == "/var/lib/inter1"
    assert _instructions("VOLUME") == ['["/var/lib/inter1"]']
    (users,) = [v for v in _instructions("RUN") if "useradd" in v]
    assert f"--uid {PIPELINE_UID}" in users
    assert f"install -d -o {PIPELINE_UID} -g {PIPELINE_UID} -m 0750 /var/lib/inter1" in users
    assert parser.envs["MPLCONFIGDIR"].startswith("/tmp/")


def test_entry_point_is_the_pipeline_command() -> None:
    assert _instructions("ENTRYPOINT") == ['["inter1-pipeline"]']
    assert _instructions("CMD") == ['["--help"]']
    assert _instructions("HEALTHCHECK") == ["NONE"]  # per subcommand: compose.yaml, k8s probes
    with (ROOT / "pyproject.toml").open("rb") as handle:
        scripts = tomllib.load(handle)["project"]["scripts"]
    assert "inter1-pipeline" in scripts
