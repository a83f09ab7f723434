"""One word for one thing across commands (issue 12, item 6), read from the app itself.

- a stored dataset is `--dataset/-d` wherever a command takes one (reproduce's old `--data`
  still works, hidden); a labelled folder is `eval --data DIR` and `audit --external DIR`;
- help shows an option's real choices, never `<str>` for a closed set, and no `<bool>` on flags;
- the choices the CLI offers are exactly the ones the core knows (cli/choices.py).
"""

from __future__ import annotations

from typing import Any, get_args

import pytest
from typer.testing import CliRunner

from cxr_covid.cli import app, choices
from tests.cli_tree import command_paths, command_tree

runner = CliRunner()


COMMANDS = command_paths()


def _option(command: Any, name: str) -> Any:
    return next((p for p in command.params if name in p.opts), None)


def test_a_stored_dataset_is_dataset_d_everywhere() -> None:
    takers = []
    for path, command in command_tree():
        for param in command.params:
            if param.name in ("dataset", "data") and param.type_descriptor.annotation is str:
                assert not param.hidden or "--data" in param.opts, path
                if param.hidden:
                    continue  # reproduce's old name, kept working
                assert {"--dataset", "-d"} <= set(param.opts), (path, param.opts)
                takers.append(path)
    assert {"download", "augment", "train", "reproduce"} <= set(takers)


def test_a_labelled_folder_is_external_and_repeatable_everywhere() -> None:
    commands = dict(command_tree())
    for name in ("eval", "audit", "reproduce", "compare"):
        external = _option(commands[name], "--external")
        assert external is not None and external.multiple, name
    old_name = _option(commands["eval"], "--data")  # eval's name before issue 21
    assert old_name is not None and old_name.hidden and old_name.multiple


def test_reproduce_takes_its_dataset_as_dataset_and_still_as_data(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import cxr_covid.reproduce.run as reproduce

    seen: list[str | None] = []

    class Stop(Exception):
        pass

    def fake_run(options: Any, notify: Any) -> Any:
        seen.append(options.data)
        raise Stop

    monkeypatch.setattr(reproduce, "run", fake_run)
    for argv in (["--dataset", "mine"], ["-d", "mine"], ["--data", "mine"]):
        result = runner.invoke(app, ["reproduce", *argv, "--no-audit"])
        assert isinstance(result.exception, Stop), result.output
    assert seen == ["mine", "mine", "mine"]
    both = runner.invoke(app, ["reproduce", "--dataset", "a", "--data", "b"])
    assert both.exit_code == 2 and "old name of --dataset" in both.stderr
    shown = runner.invoke(app, ["reproduce", "--help"], env={"COLUMNS": "200"})
    assert "--dataset" in shown.output and "--data " not in shown.output


@pytest.mark.parametrize("path", COMMANDS)
def test_help_shows_no_bool_and_real_choices(path: str) -> None:
    result = runner.invoke(app, [*path.split(), "--help"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output
    command = dict(command_tree())[path]
    for param in command.params:
        desc = param.type_descriptor
        if desc.is_choice:
            shown = "|".join(str(c) for c in desc.choices)
            assert shown in result.output, (path, param.opts, shown)


def test_every_closed_set_of_values_is_a_choice() -> None:
    """The options whose values are a fixed list offer that list (not `<str>`)."""
    commands = dict(command_tree())
    expected = {
        ("train", "--arch"): choices.Arch,
        ("train", "--strategy"): choices.Strategy,
        ("train", "--precision"): choices.Precision,
        ("train", "--resize"): choices.Resize,
        ("train", "--input"): choices.InputView,
        ("train", "--normalize"): choices.Normalize,
        ("eval", "--split"): choices.EvalSplit,
        ("reproduce", "--preset"): choices.Preset,
        ("audit", "--fill"): choices.Fill,
        ("predict", "--format"): choices.PredictFormat,
        ("models export", "--format"): choices.ExportFormat,
    }
    for (path, flag), literal in expected.items():
        param = _option(commands[path], flag)
        assert param is not None and param.type_descriptor.is_choice, (path, flag)
        assert tuple(param.type_descriptor.choices) == get_args(literal), (path, flag)


def test_the_cli_choices_are_the_cores() -> None:
    from cxr_covid import models, study
    from cxr_covid.data import images, lungs, normalize
    from cxr_covid.evaluation import testsets as evaluation
    from cxr_covid.inference import predict as prediction
    from cxr_covid.sharing import export
    from cxr_covid.training import distribute

    assert get_args(choices.Arch) == tuple(models.names())
    assert get_args(choices.Strategy) == distribute.STRATEGIES
    assert get_args(choices.Precision) == distribute.PRECISIONS
    assert get_args(choices.Resize) == tuple(images.RESIZE_METHODS)
    assert get_args(choices.InputView) == lungs.INPUTS
    assert get_args(choices.Normalize) == normalize.NORMALIZE_MODES
    assert get_args(choices.Fill) == lungs.FILLS
    assert get_args(choices.EvalSplit) == evaluation.EVAL_SPLITS
    assert get_args(choices.Preset) == tuple(study.PRESETS)
    assert get_args(choices.PredictFormat) == prediction.FORMATS
    assert get_args(choices.ExportFormat) == tuple(export.FORMATS)


def test_eval_writes_json_with_json_out() -> None:
    commands = dict(command_tree())
    json_out = _option(commands["eval"], "--json-out")
    assert json_out is not None and json_out.type_descriptor.is_path
    for flag in ("--csv", "--markdown"):
        assert _option(commands["eval"], flag) is not None


@pytest.mark.parametrize("path", COMMANDS)
def test_help_keeps_every_bracket(path: str) -> None:
    """Help is rich markup: an unescaped `[onnx]` would vanish from `--help` (escape it `\\[`)."""
    import re

    command = dict(command_tree())[path]
    texts = [command.help or "", *(getattr(p, "help", None) or "" for p in command.params)]
    for text in texts:
        assert not re.search(r"(?<!\\)\[[a-z]", text), (path, text)


def test_export_help_shows_the_extras_to_install() -> None:
    shown = runner.invoke(app, ["models", "export", "--help"], env={"COLUMNS": "250"})
    assert "cxr-covid[onnx]" in shown.output and "cxr-covid[litert]" in shown.output
