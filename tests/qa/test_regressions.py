"""Regressions for bugs found by walking the documented commands as a new user would."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cxr_covid.cli import app
from tests.helpers import build_dataset

runner = CliRunner()


@pytest.mark.parametrize("seed", ["-1", "4294967296"])
def test_augment_refuses_a_seed_numpy_cannot_take(cxr_home: Path, seed: str) -> None:
    # A negative seed used to crash inside NumPy's SeedSequence with a traceback (exit 1).
    build_dataset(cxr_home, "d", per_class=4, size=16)
    result = runner.invoke(app, ["augment", "--seed", seed])
    assert result.exit_code == 2, result.output
    assert "--seed" in result.output
    assert not (cxr_home / "datasets" / "d" / "augmented").exists()


def test_download_refuses_a_negative_seed_as_a_usage_error(tmp_path: Path) -> None:
    # It used to exit 3 blaming a class with "only 8 patient(s)" for scikit-learn's complaint.
    from tests.helpers import write_class_folders

    write_class_folders(tmp_path / "xrays", per_class=8, size=16)
    result = runner.invoke(app, ["download", "--from-dir", str(tmp_path / "xrays"), "--seed", "-5"])
    assert result.exit_code == 2, result.output
    assert "patient" not in result.output


@pytest.mark.parametrize("command", ["eval", "reproduce"])
def test_eval_and_reproduce_refuse_a_negative_seed(command: str) -> None:
    result = runner.invoke(app, [command, "--seed", "-1"])
    assert result.exit_code == 2, result.output
    assert "--seed" in result.output


def test_train_config_refuses_a_seed_keras_cannot_take() -> None:
    from cxr_covid.errors import UsageError
    from cxr_covid.training.run import TrainConfig

    for seed in (-1, 2**32):
        with pytest.raises(UsageError, match="--seed"):
            TrainConfig(seed=seed).validate()
    TrainConfig(seed=0).validate()


@pytest.mark.parametrize(
    "args",
    [
        ["augment", "--factor", "0"],
        ["predict"],
        ["train", "--no-such-option"],
        ["models", "show", "a", "b"],
        ["no-such-command"],
        ["--no-such-option"],
    ],
)
def test_usage_errors_are_one_line_with_exit_code_2(args: list[str]) -> None:
    # docs/exit-codes.md: "errors print one line, `Error: ...`"; Typer drew a framed box.
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: ") and " -h`)" in lines[0]


def test_a_bare_group_still_prints_its_help() -> None:
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 2
    assert "list" in result.output and "Error" not in result.output


def test_predict_refuses_resume_with_overwrite(tmp_path: Path) -> None:
    # Both were accepted and --resume silently won, keeping rows the user asked to replace.
    from cxr_covid.errors import UsageError
    from cxr_covid.inference.predict import predict_to_file

    out = tmp_path / "results.csv"
    out.write_text("path,predicted_class\n", encoding="utf-8")

    class NoModel:  # the check must come before the model is even looked at
        def record(self) -> None:
            raise AssertionError("model looked at before the options were checked")

    with pytest.raises(UsageError, match="exclude each other"):
        predict_to_file([tmp_path / "a.png"], NoModel(), str(out), resume=True, overwrite=True)  # type: ignore[arg-type]
    assert out.read_text(encoding="utf-8") == "path,predicted_class\n"


def test_augmenting_an_older_dataset_does_not_make_it_the_default(cxr_home: Path) -> None:
    # The default --dataset ("the only or newest") was the one whose manifest changed last,
    # so augmenting yesterday's dataset silently made train/augment pick it over today's.
    import json
    import os

    from cxr_covid.data.dataset import resolve_dataset

    for name, day in (("older", "01"), ("newer", "02")):
        build_dataset(cxr_home, name, per_class=2, size=16)
        info_path = cxr_home / "datasets" / name / "dataset.json"
        info = json.loads(info_path.read_text(encoding="utf-8"))
        info["created"] = f"2026-01-{day}T00:00:00+00:00"
        info_path.write_text(json.dumps(info), encoding="utf-8")
    manifest = cxr_home / "datasets" / "older" / "manifest.csv"
    later = (cxr_home / "datasets" / "newer" / "manifest.csv").stat().st_mtime + 60
    os.utime(manifest, (later, later))  # what `augment` does to the older one
    assert resolve_dataset(None).name == "newer"


def test_without_bootstrap_the_notes_do_not_claim_bootstrap_intervals() -> None:
    # With --bootstrap 0 the F1/AUC cells have no interval, yet the note under the table
    # announced "[95 % percentile bootstrap, 0 resamples ...]".
    from cxr_covid.evaluation.core import EvaluationReport
    from cxr_covid.evaluation.report import methods_note

    none = EvaluationReport([], [], [], 0.95, 0, 42)
    assert "0 resamples" not in methods_note(none)
    assert "no interval" in methods_note(none)
    assert (
        "0 resamples" not in none.to_dict()["interval_methods"]["f1_balanced_accuracy_macro_f1_auc"]
    )
    some = EvaluationReport([], [], [], 0.95, 200, 42)
    assert "200 resamples" in methods_note(some)


def test_reproduce_report_says_how_a_run_left_the_protocol() -> None:
    # report.md said "(smaller images and fewer epochs)" for any non-protocol run, e.g. for
    # the paper preset with only --batch-size 16; and printed the source as raw JSON.
    from cxr_covid.reproduce.run import _protocol_changes, describe_source

    paper_but_batch = {"image_size": 224, "epochs": 30, "batch_size": 16}
    assert _protocol_changes(paper_but_batch) == ["batch 16 instead of 32"]
    quick = {"image_size": 64, "epochs": 5, "batch_size": 32}
    assert _protocol_changes(quick) == ["64 px instead of 224", "5 epochs instead of 30"]
    assert describe_source({"kind": "zip", "path": "/x/a.zip"}) == "zip /x/a.zip"
    assert describe_source({"kind": "kaggle", "url": "https://k", "release": 1}) == (
        "Kaggle release 1"
    )
    assert describe_source({"kind": "dir", "path": "/x"}) == "folder /x"


def test_augment_force_removes_a_superseded_empty_folder(cxr_home: Path) -> None:
    # --balance on a balanced class makes an empty augmented/<class>-s42-n<count>/ folder; a
    # later --force with other settings left it behind (found only through manifest rows).
    from cxr_covid.data.augment import augment_dataset
    from cxr_covid.data.dataset import resolve_dataset

    build_dataset(cxr_home, "d", per_class=5, size=16)
    dataset = resolve_dataset("d")
    augment_dataset(dataset, factor=None, balance=True, classes=("covid",))
    folders = sorted(p.name for p in dataset.augmented_dir.iterdir())
    assert len(folders) == 1 and not any((dataset.augmented_dir / folders[0]).iterdir())
    augment_dataset(dataset, factor=2, classes=("covid",), force=True)
    assert sorted(p.name for p in dataset.augmented_dir.iterdir()) == ["covid-s42-n6"]


def test_ctrl_c_in_a_command_without_its_own_handler_says_so(
    cxr_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # augment, eval, download and reproduce exited 130 without a word on Ctrl-C.
    import cxr_covid.data.augment as augment_module

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    build_dataset(cxr_home, "d", per_class=4, size=16)
    monkeypatch.setattr(augment_module, "augment_dataset", interrupted)
    result = runner.invoke(app, ["augment"])
    assert result.exit_code == 130, result.output
    assert "Interrupted" in result.output


def test_reproduce_progress_shows_validation_accuracy_with_its_interval() -> None:
    # "baseline-noaug: epoch 5/5 val accuracy 87.04%" had no count and no interval.
    from cxr_covid.reproduce.run import _with_interval

    assert _with_interval(47 / 54, [54]) == "87.04% (47/54) [75.6-93.6]"
    assert _with_interval(0.5, []) == "50.00%"


def test_eval_on_the_validation_split_is_not_titled_test_accuracy() -> None:
    # `eval --split val` printed (and wrote in Markdown) "Test accuracy (..., val split)".
    import dataclasses

    import numpy as np

    from cxr_covid.evaluation.core import EvaluationReport
    from cxr_covid.evaluation.report import accuracy_title, to_markdown
    from tests.eval.test_report import Y_TRUE, _evaluation

    test = _evaluation("m", np.asarray(Y_TRUE))
    val = dataclasses.replace(test, test_set=dataclasses.replace(test.test_set, split="val"))
    assert accuracy_title(EvaluationReport([test], [], [], 0.95, 0, 1)) == "Test accuracy"
    report = EvaluationReport([val], [], [], 0.95, 0, 1)
    assert accuracy_title(report) == "Validation accuracy"
    assert "Test accuracy" not in to_markdown(report)


def test_download_errors_name_the_users_folder_not_the_internal_copy(tmp_path: Path) -> None:
    # "no images of class viral_pneumonia under images (...)": `images` is the dataset's
    # internal copy; the user gave --from-dir some/where.
    from tests.helpers import write_class_folders

    source = tmp_path / "hospital-b"
    write_class_folders(source, per_class=3, size=16, labels=("covid", "normal"))
    result = runner.invoke(app, ["download", "--from-dir", str(source)])
    assert result.exit_code == 3, result.output
    assert str(source) in result.output.replace("\n", "")
    assert "under images" not in result.output


def test_augment_takes_d_for_dataset_like_train(cxr_home: Path) -> None:
    # `train -d NAME` worked, `augment -d NAME` was "No such option: -d".
    build_dataset(cxr_home, "d", per_class=4, size=16)
    result = runner.invoke(app, ["augment", "-d", "d", "--factor", "2", "--json"])
    assert result.exit_code == 0, result.output


def _zip_of_class_folders(tmp_path: Path) -> Path:
    import zipfile

    from tests.helpers import write_class_folders

    folders = write_class_folders(tmp_path / "src", per_class=10, size=16)
    archive = tmp_path / "xrays.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folders.rglob("*.png")):
            zf.write(path, path.relative_to(folders).as_posix())
    return archive


def test_download_from_zip_checks_sha256(cxr_home: Path, tmp_path: Path) -> None:
    # --sha256 was silently ignored with --from-zip: a wrong hash still made a dataset.
    import hashlib

    archive = _zip_of_class_folders(tmp_path)
    wrong = "0" * 64
    result = runner.invoke(app, ["download", "--from-zip", str(archive), "--sha256", wrong])
    assert result.exit_code == 4, result.output
    assert "sha256" in result.output
    assert not (cxr_home / "datasets" / "xrays").exists()
    right = hashlib.sha256(archive.read_bytes()).hexdigest().upper()
    result = runner.invoke(app, ["download", "--from-zip", str(archive), "--sha256", right])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("source", ["--from-zip", "--from-dir"])
def test_download_refuses_a_malformed_or_pointless_sha256(tmp_path: Path, source: str) -> None:
    archive = _zip_of_class_folders(tmp_path)
    where = archive if source == "--from-zip" else tmp_path / "src"
    digest = "zz" if source == "--from-zip" else "0" * 64
    result = runner.invoke(app, ["download", source, str(where), "--sha256", digest])
    assert result.exit_code == 2, result.output
    assert "--sha256" in result.output
