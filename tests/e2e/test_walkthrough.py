"""docs/walkthrough.md: every command of its ```bash blocks runs, in order, as a user runs it.

Each command is a subprocess of `python -m cxr_covid` (what the `cxr-covid` entry point
calls) in a fresh working folder holding the development data under the names the page uses,
with the tool's home in a temp folder. The install block (`# not run by the tests: installs`)
is skipped. The whole page took 83-91 s here (2 shared CPU cores, 64 px, 3 epochs, a 1-epoch
lung-blind control), so it is a `slow` test; the fast variant runs every step but the audit
(`# optional, slower`), 74 s here.
"""

from __future__ import annotations

import csv
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import cxr_covid
from tests.conftest import REPO, SHARED_DATA

DOC = REPO / "docs" / "walkthrough.md"
INSTALL_MARKER = "# not run by the tests: installs"
OPTIONAL_MARKER = "# optional, slower"
# The names the page gives the development data, and where the data really is.
DATA = {
    "covid19-radiography-dev.zip": SHARED_DATA / "cxr-dev" / "covid19-radiography-dev.zip",
    "sources.csv": SHARED_DATA / "cxr-dev" / "sources.csv",
    "cxr-external-dev": SHARED_DATA / "cxr-external-dev",
}
COHORTS = ("hannover-covid", "kermany-test")


@dataclass(frozen=True)
class Step:
    block: int
    line: str
    optional: bool

    @property
    def args(self) -> list[str]:
        return shlex.split(self.line)[1:]


def _blocks() -> list[str]:
    return re.findall(r"```bash\n(.+?)\n```", DOC.read_text(encoding="utf-8"), re.S)


def _steps() -> list[Step]:
    steps = []
    for number, block in enumerate(_blocks(), 1):
        lines = [line.strip() for line in block.splitlines() if line.strip()]
        if lines[0] == INSTALL_MARKER:
            continue
        optional = OPTIONAL_MARKER in lines[0]
        steps += [Step(number, line, optional) for line in lines if not line.startswith("#")]
    return steps


def test_walkthrough_blocks_are_commands_the_test_can_run() -> None:
    blocks = _blocks()
    installs = [b for b in blocks if b.splitlines()[0].strip() == INSTALL_MARKER]
    assert len(installs) == 1 and "pip install" in installs[0]
    steps = _steps()
    # Only `cxr-covid ...` lines, no shell syntax the subprocess would not honour.
    for step in steps:
        assert step.line.startswith("cxr-covid "), f"block {step.block}: {step.line}"
        assert not set(step.line) & set("|&;<>$`\\"), f"block {step.block}: {step.line}"
    commands = [" ".join(s.args[:2]) for s in steps]
    for expected in ("info", "download", "train", "eval first", "audit first", "models pack"):
        assert any(c.startswith(expected) for c in commands), expected
    assert any("--external cxr-external-dev" in s.line for s in steps)
    assert [s.args[0] for s in steps if s.optional] == ["audit"]


def _run(step: Step, work: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "cxr_covid", *step.args],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = done.stdout + done.stderr
    if done.returncode != 0:
        pytest.fail(
            f"docs/walkthrough.md block {step.block}: `{step.line}` exited {done.returncode}\n"
            f"{output[-3000:]}"
        )
    return output


@pytest.mark.parametrize(
    "with_audit", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["fast", "full"]
)
def test_walkthrough_runs(with_audit: bool, tmp_path: Path, cxr_home: Path) -> None:
    for path in DATA.values():
        if not path.exists():
            pytest.skip(f"development data not available at {path}")
    work = tmp_path / "work"
    work.mkdir()
    for name, path in DATA.items():
        (work / name).symlink_to(path)
    env = dict(os.environ)
    env["CXR_COVID_HOME"] = str(cxr_home)
    env["COLUMNS"] = "200"  # a terminal's width: rich would otherwise wrap table cells at 80
    # The cxr_covid this test imports, whether installed or from the checkout's src/.
    source_root = str(Path(cxr_covid.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [source_root, env.get("PYTHONPATH")]))

    outputs: dict[str, str] = {}
    for step in _steps():
        if step.optional and not with_audit:
            continue
        outputs[step.line] = _run(step, work, env)

    def output_of(prefix: str) -> str:
        return next(out for line, out in outputs.items() if line.startswith(prefix))

    assert str(cxr_home) in output_of("cxr-covid info")
    assert "Confounded:" in output_of("cxr-covid download")
    assert (cxr_home / "models" / "first" / "model.json").is_file()
    assert "Test accuracy (dataset dev, test split)" in outputs["cxr-covid eval first"]
    external = output_of("cxr-covid eval first --external")
    for cohort in COHORTS:
        assert f"first on {cohort}" in external
    assert "n/a (0/0)" in external  # a cohort without some class, as the page says
    if with_audit:
        audit = output_of("cxr-covid audit")
        assert "lung-blind control" in audit and "Verdict:" in audit
        assert all(cohort in audit for cohort in COHORTS)
        assert len(list((cxr_home / "audits").glob("first-*/report.md"))) == 1
    assert (work / "first.zip").is_file() and (work / "first.zip.sha256").is_file()
    assert (cxr_home / "models" / "imported" / "model.json").is_file()

    assert "Model: imported" in output_of("cxr-covid predict")
    with (work / "predictions.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    folder = work / "cxr-external-dev" / "hannover-covid" / "covid"
    assert len(rows) == sum(1 for p in folder.iterdir() if p.is_file())
    assert {row["model"] for row in rows} == {"imported"}
    assert not any(row.get("error") for row in rows)

    assert "Model: imported" in output_of("cxr-covid heatmap")
    maps = sorted(p.name for p in (work / "heatmaps").iterdir())
    assert maps == ["005448242594563e.heatmap.png", "005448242594563e.panel.png"]
