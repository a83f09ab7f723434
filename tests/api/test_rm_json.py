"""`models rm --json` and `datasets rm --json`: what was removed and kept, stdout JSON only."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from cxr_covid.cli import app
from tests.api.conftest import TINY_ID
from tests.helpers import build_dataset
from tests.json_docs import assert_documented

runner = CliRunner()


def test_models_rm_json(tiny: Path) -> None:
    kept = runner.invoke(app, ["models", "rm", TINY_ID, "--json"], input="n\n")
    assert kept.exit_code == 0, kept.output
    # The question went to stderr; CliRunner echoes the typed answer into stdout (a terminal
    # echoes it itself), so the document starts after it.
    document = json.loads(kept.stdout[kept.stdout.index("{") :])
    assert_documented("models-rm", document)
    assert document["kept"] == [TINY_ID] and document["removed"] == []
    assert "Delete model" in kept.stderr
    gone = runner.invoke(app, ["models", "rm", TINY_ID, "--yes", "--json"])
    assert json.loads(gone.stdout)["removed"] == [TINY_ID]
    assert not tiny.exists()


def test_datasets_rm_json(cxr_home: Path) -> None:
    build_dataset(cxr_home, "tiny", per_class=3, size=16)
    result = runner.invoke(app, ["datasets", "rm", "tiny", "--yes", "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert_documented("datasets-rm", document)
    assert document == {"schema": "cxr-covid/datasets-rm/1", "removed": ["tiny"], "kept": []}
