"""Every `--json` document names its schema and has the keys docs/json.md lists.

The commands with `--json` are read from the application itself, so a command that gains the
flag without a schema (or without a line in docs/json.md) fails here. The cheap commands run
below on a tiny dataset; the heavy ones (export, audit, reproduce, train --seeds) are checked
where their own tests already run them with --json (tests/json_docs.assert_documented).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from cxr_covid.cli import app
from cxr_covid.schemas import VERSIONS, schema_id
from tests.cli_tree import command_tree
from tests.helpers import write_class_folders
from tests.json_docs import assert_documented, documented

runner = CliRunner()

# command path -> the schema names its --json can print.
BY_COMMAND = {
    "download": {"download", "download-sources"},
    "augment": {"augment"},
    "train": {"train", "train-seeds", "train-summary"},
    "eval": {"eval"},
    "reproduce": {"reproduce"},
    "predict": {"predict"},
    "heatmap": {"heatmap"},
    "calibrate": {"calibrate"},
    "audit": {"audit"},
    "compare": {"compare", "compare-list"},
    "info": {"info"},
    "models list": {"models-list"},
    "models show": {"models-show"},
    "models export": {"models-export"},
    "models pack": {"models-pack"},
    "models card": {"models-card"},
    "models import": {"models-import"},
    "models ensemble": {"models-ensemble"},
    "datasets list": {"datasets-list"},
    "datasets show": {"datasets-show"},
    "models rm": {"models-rm"},
    "datasets rm": {"datasets-rm"},
}


def _commands_with_json() -> set[str]:
    return {
        path
        for path, command in command_tree()
        if any("--json" in param.opts for param in command.params)
    }


def test_every_command_with_json_has_a_documented_schema() -> None:
    commands = _commands_with_json()
    assert commands == set(BY_COMMAND), "a command gained or lost --json: update BY_COMMAND"
    names = set().union(*BY_COMMAND.values())
    assert names == set(VERSIONS), "cxr_covid.schemas.VERSIONS and the commands disagree"
    page = documented()
    for name in names:
        assert schema_id(name) in page, f"{schema_id(name)} is missing from docs/json.md"
    assert set(page) == {schema_id(n) for n in names}, "docs/json.md lists an unknown schema"


def test_json_is_a_flag_everywhere() -> None:
    """`--json` takes no value anywhere (eval's file output is --json-out PATH)."""

    for path, command in command_tree():
        option = next((p for p in command.params if "--json" in p.opts), None)
        assert option is None or option.is_flag, f"`{path} --json` takes a value"


def _run(*argv: str) -> dict[str, Any]:
    result = runner.invoke(app, list(argv))
    assert result.exit_code == 0, (argv, result.output)
    data = json.loads(result.stdout)
    assert isinstance(data, dict)
    return data


def test_the_documents_the_commands_print(cxr_home: Path, tmp_path: Path) -> None:
    source = write_class_folders(tmp_path / "src", per_class=10, size=32)
    assert_documented(
        "download", _run("download", "--from-dir", str(source), "--name", "blobs", "--json")
    )
    assert_documented("datasets-list", _run("datasets", "list", "--json"))
    assert_documented("datasets-show", _run("datasets", "show", "blobs", "--json"))
    assert_documented("augment", _run("augment", "-d", "blobs", "--factor", "2", "--json"))
    assert_documented("train-summary", _run("train", "--summary", "--image-size", "32", "--json"))
    trained = _run(
        "train", "-d", "blobs", "--image-size", "16", "--epochs", "1", "--name", "m1", "--json"
    )
    assert_documented("train", trained)
    evaluated = _run("eval", "m1", "--json", "--no-save", "--bootstrap", "0")
    assert_documented("eval", evaluated)
    written = tmp_path / "e.json"
    _run_quiet("eval", "m1", "--json-out", str(written), "--no-save", "--bootstrap", "0")
    assert_documented("eval", json.loads(written.read_text()))  # the file: the same document
    assert_documented("calibrate", _run("calibrate", "m1", "--json"))
    assert_documented("models-list", _run("models", "list", "--json"))
    assert_documented("models-show", _run("models", "show", "m1", "--json"))
    pack = tmp_path / "m1.cxr-model.zip"
    assert_documented("models-pack", _run("models", "pack", "m1", "-o", str(pack), "--json"))
    imported = _run("models", "import", str(pack), "--name", "m2", "--json")
    assert_documented("models-import", imported)
    assert_documented("info", _run("info", "--json"))


def _run_quiet(*argv: str) -> None:
    result = runner.invoke(app, list(argv))
    assert result.exit_code == 0, (argv, result.output)


def test_eval_json_and_json_out_dash_are_one_stdout(cxr_home: Path) -> None:
    both = runner.invoke(app, ["eval", "--json", "--json-out", "-"])
    assert both.exit_code == 2
    assert "--json prints the JSON on stdout" in both.stderr
    two = runner.invoke(app, ["eval", "--json", "--csv", "-"])
    assert two.exit_code == 2
    assert "only one of --json and --csv" in two.stderr
