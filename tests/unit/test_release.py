"""Issue 21, item 14: a release is built, checked and smoke-tested the way PyPI will see it.

What runs the build is CI (`.ci/run`) and the release workflow; these tests keep those files
honest: each step is there, the version is written in one place, the smoke script parses."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from cxr_covid.about import __version__

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

REPO = Path(__file__).resolve().parents[2]
CI = (REPO / ".ci" / "run").read_text()
RELEASE = REPO / ".github" / "workflows" / "release.yml"
SMOKE = REPO / ".ci" / "smoke_wheel"


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if not line.strip().startswith("#")]


def test_ci_builds_checks_and_smoke_tests_the_wheel_after_the_tests() -> None:
    lines = _lines(CI)
    tests = next(i for i, line in enumerate(lines) if "pytest" in line)
    build = next(i for i, line in enumerate(lines) if "-m build" in line)
    twine = next(i for i, line in enumerate(lines) if "twine check" in line)
    smoke = next(i for i, line in enumerate(lines) if ".ci/smoke_wheel" in line)
    assert tests < build < twine < smoke


def test_the_test_extra_brings_build_and_twine() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[<>=\[ ]", dep)[0] for dep in project["optional-dependencies"]["test"]}
    assert {"build", "twine"} <= names


def test_the_version_is_written_once() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" in pyproject["project"]["dynamic"]
    assert "version" not in pyproject["project"]
    assert pyproject["tool"]["hatch"]["version"]["path"] == "src/cxr_covid/about.py"
    literal = re.compile(r"""["']""" + re.escape(__version__) + r"""["']""")
    written = [
        path.relative_to(REPO)
        for path in (REPO / "src").rglob("*.py")
        if literal.search(path.read_text(encoding="utf-8"))
    ]
    assert written == [Path("src/cxr_covid/about.py")]


def test_release_workflow_builds_tests_and_publishes_with_trusted_publishing() -> None:
    text = RELEASE.read_text()
    assert re.search(r"tags:\s*\[\s*\"v\*\"\s*\]", text)
    assert "python -m build" in text and "twine check" in text
    assert ".ci/smoke_wheel" in text
    assert "pypa/gh-action-pypi-publish" in text
    assert "id-token: write" in text
    assert "password" not in text and "PYPI_API_TOKEN" not in text  # no stored token
    # The job that publishes waits for the one that built and tested the wheel.
    publish = text[text.index("  publish:") :]
    assert "needs: build" in publish


def test_smoke_script_is_executable_bash_that_parses() -> None:
    assert SMOKE.stat().st_mode & 0o111
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    subprocess.run([bash, "-n", str(SMOKE)], check=True)


def test_smoke_script_refuses_clearly_without_a_wheel(tmp_path: Path) -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    result = subprocess.run(
        [bash, str(SMOKE), str(tmp_path / "nothing.whl")], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "no wheel" in result.stderr
