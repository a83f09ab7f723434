"""Calibration, operating points and the OOD guard end to end, on a model trained here.

The model is trained inside the test on the 360-image development archive (imported with
`download --from-zip`), at 64 px, fixed seed, --deterministic, 5 epochs (about 20 s on two
cores), so the guard's verdicts cannot drift with another model. 360 images say nothing
about the study's accuracy; the point is what the guard, calibration and decisions do.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from cxr_covid.cli.app import app
from tests.conftest import SHARED_DATA

DEV_ZIP = SHARED_DATA / "cxr-dev" / "covid19-radiography-dev.zip"
SAMPLE = SHARED_DATA / "cxr-sample"
MODEL = "guarded"

pytestmark = pytest.mark.skipif(
    not (DEV_ZIP.is_file() and SAMPLE.is_dir()),
    reason=f"real images not available at {SHARED_DATA}",
)


def _invoke(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("guard-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CXR_COVID_HOME", str(home))
        _invoke("download", "--from-zip", str(DEV_ZIP), "--name", "dev")
        _invoke(
            "train", "--dataset", "dev", "--image-size", "64", "--epochs", "5",
            "--batch-size", "16", "--seed", "42", "--deterministic", "--name", MODEL,
        )  # fmt: skip
    yield home


@pytest.fixture
def home(trained: Path, cxr_home: Path) -> Path:
    """This test's own copy (tests write into the model record)."""
    shutil.copytree(trained, cxr_home)
    return cxr_home


def non_xrays(folder: Path) -> dict[str, Path]:
    """Four inputs a user might feed by mistake: noise, a photograph, a blank, text."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    made = {
        "noise": folder / "noise.png",
        "photo": folder / "photo.jpg",
        "blank": folder / "blank.png",
        "text": folder / "text.png",
    }
    Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(made["noise"])
    yy, xx = np.mgrid[0:256, 0:256]
    photo = Image.fromarray(np.stack([xx, yy, 255 - xx], -1).astype(np.uint8))
    draw = ImageDraw.Draw(photo)
    draw.ellipse((40, 40, 140, 140), fill=(250, 200, 30))
    draw.rectangle((150, 120, 230, 230), fill=(20, 120, 40))
    photo.save(made["photo"], quality=90)
    Image.new("RGB", (256, 256), "white").save(made["blank"])
    text = Image.new("L", (256, 256), 255)
    draw = ImageDraw.Draw(text)
    for i in range(12):
        draw.text((10, 10 + 20 * i), f"Lorem ipsum dolor sit amet, line {i}", fill=0)
    text.save(made["text"])
    return made


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def test_guard_flags_non_xrays_and_passes_real_ones(home: Path, tmp_path: Path) -> None:
    made = non_xrays(tmp_path / "odd")
    out = tmp_path / "p.csv"
    output = _invoke("predict", str(tmp_path / "odd"), str(SAMPLE), "-r", "--out", str(out))
    header, rows = read_csv(out)
    assert (
        "decision" in header
        and "decision_rule" in header
        and "ood" in header
        and "ood_score" in header
    )
    by_name = {Path(r["path"]).name: r for r in rows}
    flagged_odd = {k: by_name[p.name]["ood"] == "true" for k, p in made.items()}
    real = [r for r in rows if Path(r["path"]).is_relative_to(SAMPLE)]
    real_flagged = sum(r["ood"] == "true" for r in real)
    print(f"\nnon-X-rays flagged: {flagged_odd}; real X-rays flagged: {real_flagged}/{len(real)}")
    assert all(flagged_odd.values()), flagged_odd
    assert len(real) == 24 and real_flagged <= 1
    assert all(r["calibration"].startswith("calibrated (temperature") for r in rows)
    assert f"{4 + real_flagged} of 28 image(s) flagged" in " ".join(output.split())


def test_eval_operating_point_calibration_and_predict_decision(home: Path, tmp_path: Path) -> None:
    report = tmp_path / "e.json"
    _invoke(
        "eval", MODEL, "--operating-point", "covid:sensitivity=0.9", "--save-operating-point",
        "--json-out", str(report), "--bootstrap", "200", "--plots", str(tmp_path / "plots"),
        "--csv", str(tmp_path / "e.csv"), "--markdown", str(tmp_path / "e.md"),
    )  # fmt: skip
    markdown = (tmp_path / "e.md").read_text()
    assert f"### {MODEL}: calibration" in markdown and "operating point covid >=" in markdown
    csv_metrics = {(r["metric"], r["class"]) for r in read_csv(tmp_path / "e.csv")[1]}
    for metric in ("ece:uncalibrated", "ece:calibrated", "brier:calibrated", "ood_flagged"):
        assert (metric, "") in csv_metrics
    assert ("operating_point:npv", "covid") in csv_metrics
    data = json.loads(report.read_text())["models"][0]
    assert data["probabilities"].startswith("calibrated")
    quality = data["calibration_quality"]
    assert set(quality) == {"uncalibrated", "calibrated"}
    for q in quality.values():
        assert q["brier"]["ci"][0] <= q["brier"]["value"] <= q["brier"]["ci"][1]
    point = data["operating_point"]
    assert point["class"] == "covid" and point["validation"]["sensitivity"]["value"] >= 0.9
    assert point["test"]["sensitivity"]["n"] == 18 and len(point["test"]["ppv"]["ci"]) == 2
    assert (tmp_path / "plots" / f"{MODEL}-reliability.png").is_file()

    # Chosen on and judged on the validation split (the images eval just scored): the same
    # figures both ways.
    on_val = tmp_path / "v.json"
    _invoke(
        "eval", MODEL, "--split", "val", "--operating-point", "covid:sensitivity=0.9",
        "--json-out", str(on_val), "--bootstrap", "0", "--no-save",
    )  # fmt: skip
    val_point = json.loads(on_val.read_text())["models"][0]["operating_point"]
    assert val_point["threshold"] == point["threshold"]
    assert val_point["test"] == point["validation"]

    record = json.loads((home / "models" / MODEL / "model.json").read_text())
    threshold = record["operating_point"]["threshold"]
    assert threshold == point["threshold"]

    out = tmp_path / "p.csv"
    _invoke("predict", str(SAMPLE), "-r", "--out", str(out))
    _, rows = read_csv(out)
    column = "decision"
    assert {r["decision_rule"] for r in rows} == {f"covid>={threshold:.6g}"}
    for r in rows:
        p = {c: float(r[f"p_{c}"]) for c in ("covid", "normal", "viral_pneumonia")}
        others = max(("normal", "viral_pneumonia"), key=lambda c: p[c])
        assert r[column] == ("covid" if p["covid"] >= threshold else others)

    # --threshold overrides the stored point; JSON lines name the rule per row.
    jl = tmp_path / "p.jsonl"
    _invoke("predict", str(SAMPLE), "-r", "--out", str(jl), "--threshold", "covid=0.999")
    first = json.loads(jl.read_text().splitlines()[0])
    assert first["decision_rule"] == "covid>=0.999" and isinstance(first["ood"], bool)


def test_calibrate_gives_an_old_model_what_train_gave_it(home: Path, tmp_path: Path) -> None:
    path = home / "models" / MODEL / "model.json"
    record = json.loads(path.read_text())
    trained_t = record["calibration"]["temperature"]
    for key in ("calibration", "ood", "operating_point"):
        record.pop(key, None)  # a record written before these existed
    path.write_text(json.dumps(record))

    out = tmp_path / "old.csv"
    output = _invoke("predict", str(SAMPLE / "covid"), "--out", str(out))
    _, rows = read_csv(out)
    assert {r["calibration"] for r in rows} == {"uncalibrated"} and {r["ood"] for r in rows} == {""}
    assert "no out-of-distribution check" in output

    output = _invoke("calibrate", MODEL, "--json")
    result = json.loads(output)
    # Same images, read from the files instead of training's cache: the same temperature.
    assert result["calibration"]["temperature"] == pytest.approx(trained_t, rel=1e-3)
    assert json.loads(path.read_text())["ood"]["features"]["threshold"] > 0


def test_eval_data_and_heatmap_report_the_guard(home: Path, tmp_path: Path) -> None:
    report = tmp_path / "e.json"
    _invoke("eval", MODEL, "--data", str(SAMPLE), "--json-out", str(report), "--bootstrap", "50")
    ood = json.loads(report.read_text())["models"][0]["ood"]
    assert ood["checked"] and ood["n"] == 24 and ood["flagged"] <= 1

    from cxr_covid.inference.gradcam import heatmap_files
    from cxr_covid.models import store

    made = non_xrays(tmp_path / "odd")
    summary = heatmap_files([made["noise"], SAMPLE / "covid" / "0a7faa2a.png"],
                            store.resolve(MODEL), str(tmp_path / "maps"))  # fmt: skip
    assert [r.ood for r in summary.results] == [True, False]
    assert all(r.panel is not None and r.panel.is_file() for r in summary.results)
