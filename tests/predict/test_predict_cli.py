"""`cxr-covid predict`: rows for every input, errors in their rows, resume, formats."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cxr_covid.cli import app
from cxr_covid.data.images import load_for_model
from cxr_covid.errors import EXIT_DATA, EXIT_DEPENDENCY, EXIT_PARTIAL, EXIT_USAGE
from cxr_covid.inference.batches import predict_paths
from cxr_covid.inference.predict import columns, predict_to_file
from cxr_covid.models import store
from cxr_covid.progress import NullReporter
from tests.predict.conftest import BAD, block_pydicom, save_tiny_model

runner = CliRunner()
CLASSES = ["covid", "normal", "viral_pneumonia"]


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_every_input_gets_a_row_and_bad_ones_say_why(
    tiny_model: Path, odd_images: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "results.csv"
    result = runner.invoke(
        app, ["predict", str(odd_images["good"].parent), "--model", str(tiny_model), "-o", str(out)]
    )
    assert result.exit_code == EXIT_PARTIAL, result.output
    rows = _read_csv(out)
    assert list(rows[0]) == columns(CLASSES)
    assert len(rows) == len(odd_images)
    by_path = {row["path"]: row for row in rows}
    for name, path in odd_images.items():
        row = by_path[str(path)]
        assert row["model"] == "tiny-baseline"
        if name in BAD:
            assert row["error"] and row["predicted_class"] == "" and row["p_covid"] == ""
        else:
            assert row["error"] == "", row["error"]
            probs = [float(row[f"p_{c}"]) for c in CLASSES]
            assert abs(sum(probs) - 1) < 1e-5
            assert row["predicted_class"] == CLASSES[int(np.argmax(probs))]
    assert f"{len(BAD)} of {len(odd_images)} input(s) could not be read" in result.output
    assert "not a diagnostic device" in result.output
    assert "unreadable" in result.output


def test_csv_probabilities_match_predict_paths_and_the_model(
    tiny_model: Path, odd_images: dict[str, Path], tmp_path: Path
) -> None:
    """The same files give the same numbers whichever path they take (CSV, eval's
    predict_paths, a direct model call on load_for_model pixels)."""
    good = [p for k, p in odd_images.items() if k not in BAD]
    out = tmp_path / "r.csv"
    args = ["predict", *map(str, good), "--model", str(tiny_model), "-o", str(out), "-b", "4"]
    assert runner.invoke(app, args).exit_code == 0
    rows = {r["path"]: r for r in _read_csv(out)}
    stored = store.StoredModel(tiny_model)
    model, prep = stored.load(), stored.record().prep
    via_eval = {p.path: p.probabilities for p in predict_paths(model, good, prep, batch_size=32)}
    for path in good:
        from_csv = np.array([float(rows[str(path)][f"p_{c}"]) for c in CLASSES])
        direct = np.asarray(model(load_for_model(path, prep)[None].astype("float32")))[0]
        np.testing.assert_allclose(from_csv, direct, atol=1e-6)
        np.testing.assert_allclose(from_csv, via_eval[path], atol=1e-6)


def test_non_ascii_and_comma_file_names_round_trip(
    tiny_model: Path, odd_images: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "r.csv"
    name = odd_images["unicode"]
    assert "," in name.name and "ö" in name.name
    result = runner.invoke(app, ["predict", str(name), "-m", str(tiny_model), "-o", str(out)])
    assert result.exit_code == 0, result.output
    rows = _read_csv(out)
    assert [r["path"] for r in rows] == [str(name)]
    assert Path(rows[0]["path"]).is_file()


def test_jsonl_format_and_stdout(
    tiny_model: Path, odd_images: dict[str, Path], tmp_path: Path
) -> None:
    files = [str(odd_images["good"]), str(odd_images["empty"]), str(odd_images["unicode"])]
    result = runner.invoke(
        app, ["predict", *files, "-m", str(tiny_model), "--out", "-", "--format", "jsonl"]
    )
    assert result.exit_code == EXIT_PARTIAL
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [r["path"] for r in lines] == files
    assert lines[1]["error"] and lines[1]["p_covid"] is None
    assert lines[0]["predicted_class"] in CLASSES
    assert "Predictions" not in result.stdout  # the summary goes to stderr, data to stdout

    out = tmp_path / "r.jsonl"  # the suffix picks the format
    runner.invoke(app, ["predict", files[0], "-m", str(tiny_model), "-o", str(out)])
    assert json.loads(out.read_text(encoding="utf-8"))["path"] == files[0]


def test_csv_to_stdout(tiny_model: Path, odd_images: dict[str, Path]) -> None:
    result = runner.invoke(
        app, ["predict", str(odd_images["unicode"]), "-m", str(tiny_model), "-o", "-"]
    )
    assert result.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert rows[0]["path"] == str(odd_images["unicode"])


def test_existing_output_is_protected(
    tiny_model: Path, odd_images: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "r.csv"
    out.write_text("precious\n")
    args = ["predict", str(odd_images["good"]), "-m", str(tiny_model), "-o", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == EXIT_USAGE
    assert "--resume" in result.output and out.read_text() == "precious\n"
    assert runner.invoke(app, [*args, "--overwrite"]).exit_code == 0
    assert len(_read_csv(out)) == 1


def test_interrupted_run_keeps_finished_rows_and_resume_completes_it(
    tiny_model: Path, tmp_path: Path
) -> None:
    from tests.predict.test_inference import _write_pngs

    paths = _write_pngs(tmp_path / "in", 9)
    out = tmp_path / "r.csv"
    stored = store.StoredModel(tiny_model)

    class StopAfterFirstBatch(NullReporter):
        def advance(self, task: str, completed: int, total: int | None = None) -> None:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict_to_file(paths, stored, str(out), batch_size=4, reporter=StopAfterFirstBatch())
    kept = _read_csv(out)
    assert [r["path"] for r in kept] == [str(p) for p in paths[:4]]
    # A hard kill can tear the last line: resume must drop it, not keep half a row.
    with open(out, "a", encoding="utf-8") as handle:
        handle.write(f"{paths[4]},norm")

    result = runner.invoke(
        app, ["predict", str(tmp_path / "in"), "-m", str(tiny_model), "-o", str(out), "--resume"]
    )
    assert result.exit_code == 0, result.output
    assert "4 input(s) already in" in result.output
    rows = _read_csv(out)
    assert sorted(r["path"] for r in rows) == sorted(str(p) for p in paths)
    assert all(r["p_covid"] and r["model"] == "tiny-baseline" for r in rows)
    assert kept == rows[:4]  # earlier rows untouched

    again = runner.invoke(
        app, ["predict", str(tmp_path / "in"), "-m", str(tiny_model), "-o", str(out), "--resume"]
    )
    assert again.exit_code == 0 and len(_read_csv(out)) == 9


def test_resume_refuses_another_models_results(
    tiny_model: Path, odd_images: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "r.csv"
    args = ["predict", str(odd_images["good"]), "-o", str(out)]
    assert runner.invoke(app, [*args, "-m", str(tiny_model)]).exit_code == 0
    other = save_tiny_model(tmp_path / "other-home", "inception", 16)
    result = runner.invoke(app, [*args, "-m", str(other), "--resume"])
    assert result.exit_code == EXIT_USAGE
    assert "tiny-baseline" in result.output


def test_missing_dicom_extra_is_exit_9(
    tiny_model: Path, odd_images: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    block_pydicom(monkeypatch)
    result = runner.invoke(
        app,
        ["predict", str(odd_images["mono1"]), "-m", str(tiny_model), "-o", str(tmp_path / "r.csv")],
    )
    assert result.exit_code == EXIT_DEPENDENCY
    assert "pip install 'cxr-covid[dicom]'" in result.output


def test_a_folder_without_images_is_a_data_error(tiny_model: Path, tmp_path: Path) -> None:
    """Issue 21, item 12: it exited 2, the code of a bad command line."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.png").write_bytes(b"")
    args = ["predict", str(tmp_path), "-m", str(tiny_model), "-o", str(tmp_path / "r.csv")]
    result = runner.invoke(app, args)
    assert result.exit_code == EXIT_DATA and "-r" in result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(app, ["predict", str(empty), "-m", str(tiny_model), "-o", "-"])
    assert result.exit_code == EXIT_DATA
    assert f"Error: no image files found in {empty}" in " ".join(result.stderr.split())
    missing = runner.invoke(app, ["predict", str(tmp_path / "nope.png"), "-o", "-"])
    assert missing.exit_code == EXIT_USAGE and "no such file" in missing.output


def test_real_sample_images_all_predict(tiny_model: Path, cxr_sample: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    result = runner.invoke(
        app, ["predict", str(cxr_sample), "-r", "-m", str(tiny_model), "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    rows = _read_csv(out)
    assert len(rows) == 24
    assert all(r["error"] == "" and r["predicted_class"] in CLASSES for r in rows)
    assert "24 row(s) written" in result.output


def test_ctrl_c_exits_130_and_says_how_to_continue(
    tiny_model: Path, odd_images: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cxr_covid.inference.predict

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cxr_covid.inference.predict, "predict_to_file", interrupted)
    out = tmp_path / "r.csv"
    result = runner.invoke(
        app, ["predict", str(odd_images["good"]), "-m", str(tiny_model), "-o", str(out)]
    )
    assert result.exit_code == 130
    assert "--resume" in result.output


def test_jsonl_resume_skips_done_inputs(tiny_model: Path, tmp_path: Path) -> None:
    from tests.predict.test_inference import _write_pngs

    paths = _write_pngs(tmp_path / "in", 5)
    out = tmp_path / "r.jsonl"
    first = ["predict", *map(str, paths[:2]), "-m", str(tiny_model), "-o", str(out)]
    assert runner.invoke(app, first).exit_code == 0
    rest = ["predict", str(tmp_path / "in"), "-m", str(tiny_model), "-o", str(out), "--resume"]
    assert runner.invoke(app, rest).exit_code == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["path"] for r in rows] == [str(p) for p in paths]


def test_real_sigint_keeps_complete_rows(tiny_model: Path, tmp_path: Path) -> None:
    """A real Ctrl-C (SIGINT) to a running `cxr-covid predict`: exit 130, and every line in
    the file is a complete row that --resume can continue from."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.predict.test_inference import _write_pngs

    paths = _write_pngs(tmp_path / "in", 3000, size=8)
    out = tmp_path / "r.csv"
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo / "src"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, "-m", "cxr_covid", "predict", str(tmp_path / "in")]
    command += ["-m", str(tiny_model), "-o", str(out), "-b", "1"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if out.exists() and out.read_bytes().count(b"\n") >= 3:
            break
        time.sleep(0.02)
    if process.poll() is not None:
        pytest.skip("the run finished before it could be interrupted")
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr.decode()
    assert b"--resume" in stderr
    raw = out.read_bytes()
    assert raw.endswith(b"\n")
    rows = _read_csv(out)
    assert 2 <= len(rows) < len(paths)
    assert all(r["p_covid"] and r["model"] == "tiny-baseline" for r in rows)
    assert [r["path"] for r in rows] == [str(p) for p in sorted(paths)[: len(rows)]]
