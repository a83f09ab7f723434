"""`cxr-covid audit` end to end on generated films whose class sits either outside the lung
field (a corner marker: a shortcut the lung-blind control can read) or only inside it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cxr_covid import atomic, classes, study
from cxr_covid.audit import checks as audit_checks
from cxr_covid.audit import control as audit_control
from cxr_covid.audit import report as audit_report
from cxr_covid.audit import results as audit_results
from cxr_covid.audit.results import AuditOptions
from cxr_covid.audit.run import run_audit
from cxr_covid.cli import app
from cxr_covid.data.dataset import Dataset
from cxr_covid.data.manifest import ManifestRow, sha256_file
from cxr_covid.errors import DataError, UsageError
from cxr_covid.models import store
from cxr_covid.progress import NullReporter
from cxr_covid.training import run as training
from cxr_covid.training import run_folder, tracker
from tests.json_docs import assert_documented

runner = CliRunner()
SIZE = 32
CORNERS = {  # (row, col) of a 4 px marker, outside the fixed lung field
    classes.COVID: (0, 0),
    classes.NORMAL: (0, SIZE - 4),
    classes.VIRAL_PNEUMONIA: (SIZE - 4, 0),
}
INSIDE = {  # blob centres inside the fixed lung field
    classes.COVID: (0.3, 0.28),
    classes.NORMAL: (0.5, 0.72),
    classes.VIRAL_PNEUMONIA: (0.7, 0.28),
}


def film(label: str, shortcut: bool, rng: np.random.Generator) -> np.ndarray:
    pixels = rng.normal(90, 12, (SIZE, SIZE))
    if shortcut:
        r, c = CORNERS[label]
        pixels[r : r + 4, c : c + 4] = 250
    else:
        cy, cx = INSIDE[label]
        yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
        pixels[(yy - cy) ** 2 + (xx - cx) ** 2 < 0.09**2] = 230
    return np.clip(pixels, 0, 255).astype(np.uint8)


def build(
    home: Path,
    name: str,
    shortcut: bool,
    per_class: int = 30,
    origins: dict[str, tuple[str, str]] | None = None,
) -> Dataset:
    """`origins`: class -> (collection, age group) recorded in the manifest."""
    root = home / "datasets" / name
    rng = np.random.default_rng(4)
    rows = []
    for label in classes.STUDY_CLASSES:
        for i in range(per_class):
            path = root / "images" / label / "images" / f"{label}-{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(film(label, shortcut, rng), mode="L").save(path)
            split = "train" if i < 0.6 * per_class else "val" if i < 0.8 * per_class else "test"
            rows.append(
                ManifestRow(
                    path.relative_to(root).as_posix(),
                    label,
                    sha256_file(path),
                    SIZE,
                    SIZE,
                    split,
                    collection=(origins or {}).get(label, ("unknown", "unknown"))[0],
                    age_group=(origins or {}).get(label, ("unknown", "unknown"))[1],
                )
            )
    dataset = Dataset(root)
    dataset.write_rows(rows)
    atomic.write_json(dataset.info_path, {"name": name, "source": {"kind": "test"}})
    return dataset


def train(name: str, epochs: int = 5, group: str | None = None) -> str:
    config = training.TrainConfig(
        dataset=name,
        epochs=epochs,
        batch_size=16,
        image_size=SIZE,
        seed=3,
        name=f"m-{name}",
        group=group,
    )
    return training.train(config).model.id


def test_shortcut_outside_the_lungs_gives_a_damning_verdict_and_a_cached_control(
    cxr_home: Path, tmp_path: Path
) -> None:
    dataset = build(cxr_home, "corners", shortcut=True)
    model_id = train("corners", group="seeds")
    # An external folder holding one of the model's own training images (left out) and new ones.
    external = tmp_path / "external"
    rng = np.random.default_rng(9)
    for label in classes.STUDY_CLASSES:
        for i in range(4):
            target = external / label / f"new-{i}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(film(label, True, rng), mode="L").save(target)
    train_row = next(r for r in dataset.rows() if r.split == "train")
    shutil.copy(dataset.file(train_row), external / train_row.label / "copied.png")

    class Stages(NullReporter):
        def __init__(self) -> None:
            self.advanced: set[str] = set()

        def advance(self, task: str, completed: int, total: int | None = None) -> None:
            self.advanced.add(task)

    stages = Stages()
    result = run_audit(
        AuditOptions(model=model_id, external=[external], control_epochs=4, panels=2), stages
    )
    full, hidden, _only = result.views
    assert full.accuracy.value >= 0.9
    # The marker lies outside the lungs: hiding the lungs keeps accuracy, the control learns it.
    assert hidden.accuracy.value >= 0.9
    assert result.control is not None and not result.control.reused
    # The control copies the model's recipe, never its place in a group of seeds.
    control_record = json.loads((Path(result.control.path) / "model.json").read_text())
    assert control_record["training"]["group"] is None
    assert result.control.view.accuracy.value >= 0.8
    assert result.level in ("strong", "moderate")
    assert "lung-blind model" in result.verdict and "shortcut" in result.verdict
    assert f"{round(100 * result.control.view.accuracy.value)}%" in result.verdict
    assert stages.advanced >= {
        audit_results.VIEWS_TASK,
        audit_results.ATTENTION_TASK,
        audit_results.CONTROL_TASK,
        audit_results.EXTERNAL_TASK,
        "Epoch 1/4",  # the control's training reports its steps through the same reporter
    }
    # Attention per image, per class; panels of the furthest-outside images.
    assert result.attention is not None
    assert len(result.attention.per_image) + result.attention.no_evidence == full.accuracy.n
    assert len(result.attention.panels) == 2
    # External: the copied training image is left out, the 12 new ones are scored.
    (ext,) = result.external
    assert ext.images == 12 and [Path(p).name for p in ext.overlaps] == ["copied.png"]
    assert set(ext.difference) == set(classes.STUDY_CLASSES)
    # The run folder is complete, and the control never became the store's newest model.
    assert result.folder is not None
    files = {
        p.relative_to(result.folder).as_posix() for p in result.folder.rglob("*") if p.is_file()
    }
    assert {"report.md", "audit.json", "views.png", "attention.png"} <= files
    assert sum(f.startswith("panels/") for f in files) == 2
    saved = json.loads((result.folder / "audit.json").read_text())
    assert saved["verdict"] == result.verdict and saved["control"]["epochs"] == 4
    report = (result.folder / "report.md").read_text()
    assert "lung-blind control" in report and "External sets" in report
    assert [m.id for m in store.list_models()] == [model_id]

    # A second audit reuses the control instead of training it again.
    again = run_audit(AuditOptions(model=model_id, control_epochs=4, attention=False))
    assert again.control is not None and again.control.reused
    assert again.control.view.accuracy == result.control.view.accuracy


@pytest.mark.slow
def test_signal_inside_the_lungs_leaves_the_control_near_chance(cxr_home: Path) -> None:
    build(cxr_home, "inside", shortcut=False, per_class=40)
    model_id = train("inside", epochs=8)
    result = run_audit(AuditOptions(model=model_id, control_epochs=4, attention=False))
    assert result.views[0].accuracy.value >= 0.8
    assert result.control is not None
    assert result.control.view.accuracy.value <= 0.55
    assert result.level in ("none", "weak")


def test_without_the_control_the_verdict_says_what_it_rests_on(cxr_home: Path) -> None:
    build(cxr_home, "corners", shortcut=True, per_class=10)
    model_id = train("corners", epochs=1)
    result = run_audit(AuditOptions(model=model_id, control=False, attention=False))
    assert result.control is None
    assert "control was skipped" in result.verdict_basis
    assert "masked views" in result.verdict_basis
    assert not (cxr_home / "audit" / "controls").exists()
    # No image's origin is recorded: no origin-only yardstick, and the verdict does not invent one.
    assert result.origin_only is None and "sees no pixel" not in result.verdict


def test_the_audit_says_how_far_the_images_origins_alone_carry(cxr_home: Path) -> None:
    # The study's confounding: COVID-19 adults from one collection, the other two classes
    # Kermany children. A rule that knows only the origin calls every Kermany child by the
    # training split's majority there (a tie: Healthy, first in the study's order).
    origins = {
        classes.COVID: ("kaggle-covid", "adult"),
        classes.NORMAL: ("kermany", "child"),
        classes.VIRAL_PNEUMONIA: ("kermany", "child"),
    }
    dataset = build(cxr_home, "confounded", shortcut=True, per_class=20, origins=origins)
    model_id = train("confounded", epochs=1)
    result = run_audit(AuditOptions(model=model_id, control=False, attention=False))
    origin = result.origin_only
    assert origin is not None
    test_labels = [r.label for r in dataset.rows() if r.split == "test"]
    expected = sum(label != classes.VIRAL_PNEUMONIA for label in test_labels)
    assert (origin.accuracy.successes, origin.accuracy.n) == (expected, len(test_labels))
    assert origin.per_class[classes.VIRAL_PNEUMONIA].successes == 0
    assert origin.predicted == {classes.COVID: 4, classes.NORMAL: 8, classes.VIRAL_PNEUMONIA: 0}
    assert "sees no pixel" in result.verdict and "give much away" in result.verdict
    saved = json.loads((result.folder / "audit.json").read_text())
    assert saved["origin_only"]["accuracy"]["successes"] == expected
    assert audit_results.ORIGIN_VIEW in (result.folder / "report.md").read_text()


def test_an_interrupted_audit_leaves_no_report(
    cxr_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build(cxr_home, "corners", shortcut=True, per_class=10)
    model_id = train("corners", epochs=1)

    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(audit_report, "write_plots", interrupted)
    target = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_audit(AuditOptions(model=model_id, control=False, attention=False, out=target))
    assert not target.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_audit_uses_masks_only_when_every_test_image_has_one(cxr_home: Path) -> None:
    dataset = build(cxr_home, "corners", shortcut=True, per_class=10)
    model_id = train("corners", epochs=1)
    test_rows = [r for r in dataset.rows() if r.split == "test"]
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[4:28, 4:28] = 255
    for row in test_rows:
        target = dataset.file(row).parent.parent / "masks" / Path(row.path).name
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask).save(target)
    result = run_audit(AuditOptions(model=model_id, control=False, attention=False))
    assert result.lung_field["kind"] == "masks"
    # One mask of another shape: a one-line data error, no report.
    Image.fromarray(np.zeros((SIZE, 2 * SIZE), np.uint8) + 255).save(target)
    with pytest.raises(DataError, match="does not match its image"):
        run_audit(AuditOptions(model=model_id, control=False, attention=False))
    target.unlink()
    partial = run_audit(AuditOptions(model=model_id, control=False, attention=False))
    assert partial.lung_field["kind"] == "fixed"
    # Three audits within seconds: each its own run folder.
    assert len({result.folder, partial.folder}) == 2
    assert len(list((cxr_home / "audits").iterdir())) == 2


def test_cli_json_summary_and_bad_input(cxr_home: Path, tmp_path: Path) -> None:
    build(cxr_home, "corners", shortcut=True, per_class=10)
    model_id = train("corners", epochs=1)
    result = runner.invoke(app, ["audit", model_id, "--no-control", "--panels", "0", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert_documented("audit", data)
    assert data["model"] == model_id and data["control"] is None
    assert [v["view"] for v in data["views"]] == ["full", "lungs hidden", "lungs only"]
    assert "Verdict" in result.stderr
    for argv, code, words in (
        (["--fill", "pink"], 2, "'pink' is not one of 'mean', 'blur', 'black'"),
        (["--control-epochs", "0"], 2, "--control-epochs"),
        (["--external", str(tmp_path / "nowhere")], 3, "not a folder"),
        (["--class-map", "a=covid"], 2, "--external"),
    ):
        bad = runner.invoke(app, ["audit", model_id, "--no-control", *argv])
        assert bad.exit_code == code, bad.output
        assert words in bad.stderr and "Traceback" not in bad.output
    missing = runner.invoke(app, ["audit", "no-such-model"])
    assert missing.exit_code == 6


def test_newcombe_difference() -> None:
    from cxr_covid import stats

    d, low, high = audit_checks.newcombe_difference(
        stats.proportion(10, 20), stats.proportion(18, 20)
    )
    assert d == pytest.approx(-0.4)
    assert low < -0.4 < high < 0  # clearly below
    same = audit_checks.newcombe_difference(stats.proportion(9, 10), stats.proportion(9, 10))
    assert same[1] < 0 < same[2]


def test_bad_options_are_usage_errors() -> None:
    with pytest.raises(UsageError):
        AuditOptions(panels=-1).validate()


@pytest.mark.slow
def test_reproduce_preset_robust_trains_the_recipe_and_reports_the_audit(
    cxr_home: Path, tmp_path: Path
) -> None:
    import zipfile

    archive = tmp_path / "tiny.zip"
    rng = np.random.default_rng(0)
    folders = {"covid": "COVID", "normal": "Normal", "viral_pneumonia": "Viral Pneumonia"}
    with zipfile.ZipFile(archive, "w") as zf:
        for label, folder in folders.items():
            for i in range(15):
                path = tmp_path / "png" / f"{folder}-{i}.png"
                path.parent.mkdir(exist_ok=True)
                Image.fromarray(film(label, True, rng), mode="L").save(path)
                zf.write(path, f"COVID-19_Radiography_Dataset/{folder}/images/{folder}-{i}.png")
    external = tmp_path / "external"
    for label in folders:
        (external / label).mkdir(parents=True)
        Image.fromarray(film(label, True, rng), mode="L").save(external / label / "x.png")
    run_dir = tmp_path / "run"
    argv = ["reproduce", "--preset", "robust", "--from-zip", str(archive), "--out", str(run_dir)]
    argv += ["--image-size", "32", "--epochs", "1", "--batch-size", "16", "--bootstrap", "20"]
    argv += ["--no-estimate", "--external", str(external), "--control-epochs", "1"]
    result = runner.invoke(app, argv)
    assert result.exit_code == 0, result.output
    data = json.loads((run_dir / "results.json").read_text())
    recipe = study.PRESETS["robust"].recipe
    assert recipe  # round 5 chose a recipe, not the study's plain one
    assert data["settings"]["recipe"] == recipe
    for row in data["rows"]:
        record = store.resolve(row["model"]).record()
        assert {key: record.training[key] for key in recipe} == recipe
    report = (run_dir / "report.md").read_text()
    assert "Shortcut audit" in report and "External `external`" in report
    assert data["audit"]["external"][0]["images"] == 3


def test_a_downloaded_release_keeps_its_masks_for_the_audit(cxr_home: Path, tmp_path: Path) -> None:
    from cxr_covid.data.ingest import download_dataset
    from tests.data.zips import layout_zip

    archive = tmp_path / "current.zip"
    archive.write_bytes(layout_zip("current", per_class=10))
    dataset = download_dataset(from_zip=archive, name="cur").dataset
    assert dataset is not None
    assert not any("/masks/" in r.path for r in dataset.rows())  # never training images
    config = training.TrainConfig(dataset="cur", epochs=1, batch_size=8, image_size=24, name="m")
    training.train(config)
    result = run_audit(AuditOptions(model="m", control=False, attention=False))
    assert result.lung_field["kind"] == "masks"
    assert not any(n.startswith("warning") for n in result.notes)
    # A mask named like no image: a warning, and the audit goes on.
    some_mask = next((dataset.root / "images").rglob("masks/*.png"))
    shutil.copy(some_mask, some_mask.with_name("stray.png"))
    again = run_audit(AuditOptions(model="m", control=False, attention=False))
    assert any("stray.png" in n and n.startswith("warning") for n in again.notes)


def test_an_audit_interrupted_in_the_control_resumes_it(
    cxr_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build(cxr_home, "corners", shortcut=True, per_class=10)
    model_id = train("corners", epochs=1)
    record = store.resolve(model_id).record()
    calls = {"n": 0}
    original = tracker.tracker_class()

    class Interrupting(original):  # type: ignore[misc,valid-type]
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            super().on_epoch_end(epoch, logs)
            calls["n"] += 1
            if calls["n"] == 1:
                raise KeyboardInterrupt

    monkeypatch.setattr(tracker, "tracker_class", lambda: Interrupting)
    with pytest.raises(audit_control.AuditInterrupted, match="rerun the same audit"):
        audit_control.ensure_control(record, 2)
    name = f"lungblind-{audit_control.control_key(record, 2)}"
    assert run_folder.run_dir(name).is_dir()  # the finished epoch is kept
    control, reused = audit_control.ensure_control(record, 2)
    assert not reused and control.record().training["resumed"] == 1
    assert control.record().training["epochs_run"] == 2
    assert not run_folder.run_dir(name).exists() and not store.model_dir(name).exists()
