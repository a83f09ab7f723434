"""Issue 21, items 8 and 9: the model card is written beside the model (and `--out` copies
it), its calibration block reads as text, its provenance comes from the dataset's recorded
collections and age groups, and audits kept in the record appear on it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cxr_covid.cli import app
from cxr_covid.models import store
from cxr_covid.models.audit_log import append_audit
from cxr_covid.models.records import SavedEvaluation
from cxr_covid.sharing.card import CARD_FILE, dataset_info_for, render
from tests.api.conftest import TINY_ID
from tests.helpers import build_dataset

runner = CliRunner()


def test_card_goes_into_the_model_folder_not_the_current_one(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    monkeypatch.chdir(checkout)
    result = runner.invoke(app, ["models", "card", TINY_ID])
    assert result.exit_code == 0, result.stderr
    assert (tiny / CARD_FILE).is_file()
    assert list(checkout.iterdir()) == []  # the checkout stays clean
    copy = tmp_path / "elsewhere" / "card.md"
    result = runner.invoke(app, ["models", "card", TINY_ID, "--out", str(copy)])
    assert result.exit_code == 0, result.stderr
    assert copy.read_text() == (tiny / CARD_FILE).read_text()
    printed = runner.invoke(app, ["models", "card", TINY_ID, "-o", "-"])
    assert printed.stdout == (tiny / CARD_FILE).read_text()


def test_card_json_says_where_the_card_went(tiny: Path, tmp_path: Path) -> None:
    import json

    copy = tmp_path / "copy.md"
    result = runner.invoke(app, ["models", "card", TINY_ID, "--out", str(copy), "--json"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)  # stdout holds the document alone
    assert data["schema"] == "cxr-covid/models-card/1"
    assert data["model_id"] == TINY_ID
    assert data["path"] == str(tiny / CARD_FILE) and data["copy"] == str(copy)
    assert data["bytes"] == len(copy.read_bytes())
    both = runner.invoke(app, ["models", "card", TINY_ID, "-o", "-", "--json"])
    assert both.exit_code == 2 and "choose one" in both.stderr


def test_calibration_figures_read_as_text_not_json(tiny: Path) -> None:
    record = store.resolve(TINY_ID).record()
    record.evaluations = [
        SavedEvaluation.from_dict(
            {
                "split": "test",
                "source": "dataset:blobs",
                "accuracy": 0.5,
                "correct": 5,
                "n": 10,
                "probabilities": "calibrated (temperature 1.7)",
                "ece": {
                    "uncalibrated": {"value": 0.12, "ci": [0.05, 0.2]},
                    "calibrated": {"value": 0.04, "ci": [0.01, 0.09]},
                },
                "brier": {"calibrated": {"value": 0.3, "ci": [0.2, 0.4]}},
                "ood_flagged": 1,
            }
        )
    ]
    card = render(record)
    assert "```json" not in card
    assert (
        "Expected calibration error (lower is better): uncalibrated 0.120 [0.050-0.200]; "
        "calibrated 0.040 [0.010-0.090]." in card
    )
    assert "Brier score (lower is better): calibrated 0.300 [0.200-0.400]." in card
    assert "guard flagged: 1." in card


def test_provenance_comes_from_the_dataset_recorded_collections(tiny: Path, cxr_home: Path) -> None:
    dataset = build_dataset(cxr_home, "blobs", per_class=4)
    origin = {"covid": ("hannover", "adult"), "normal": ("rsna", "adult")}
    rows = [
        dataclasses.replace(
            r,
            collection=origin.get(r.label, ("kermany", "child"))[0],
            age_group=origin.get(r.label, ("kermany", "child"))[1],
        )
        for r in dataset.rows()
    ]
    dataset.write_rows(rows)
    info = dataset.info()
    info["split_sha256"] = "s" * 64
    dataset.write_info(info)
    record = store.resolve(TINY_ID).record()
    record.dataset = {"name": "blobs", "split_sha256": "s" * 64}
    card = render(record, dataset_info_for(record))
    assert "Sources by class, as recorded for this dataset" in card
    assert "COVID-19: hannover 4 (100%)" in card
    assert "kermany 4 (100%)" in card
    assert "child 4 (100%)" in card
    assert "Kermany et al. paediatric collection" not in card  # the generic text is gone
    assert "not recorded for this dataset" in render(record)  # no dataset: says so


def test_an_audit_is_kept_in_the_record_and_shown_on_the_card(tiny: Path) -> None:
    stored = store.resolve(TINY_ID)
    assert "Not audited yet" in render(stored.record())
    audit = {
        "created": "2026-12-06T05:00:00+00:00",
        "dataset": "blobs",
        "verdict": "Strong shortcut: the lung-blind control reaches 71%.",
        "shortcut_level": "strong",
        "views": [{"view": "full", "accuracy": {"value": 0.9, "successes": 9, "n": 10}}],
        "control": {"accuracy": {"value": 0.7, "successes": 7, "n": 10}},
        "attention": {"median_share_inside": 0.42},
        "folder": "/home/x/audits/tiny",
    }
    assert append_audit(stored, audit)
    record = stored.record()
    assert record.audits[-1]["verdict"] == audit["verdict"]
    assert record.audits[-1]["figures"]["control"]["n"] == 10
    card = render(record)
    assert "## Shortcut audit" in card
    assert "Verdict: Strong shortcut" in card
    assert "- control: 70.0% (7/10)." in card
    assert "inside the lungs: 42.0%" in card


def test_pack_goes_beside_the_model_by_default(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    monkeypatch.chdir(checkout)
    result = runner.invoke(app, ["models", "pack", TINY_ID])
    assert result.exit_code == 0, result.stderr
    assert (tiny / f"{TINY_ID}.cxr-model.zip").is_file()
    assert list(checkout.iterdir()) == []


def test_an_audit_keeps_what_was_written_to_the_record_while_it_ran(tiny: Path) -> None:
    stored = store.resolve(TINY_ID)
    stored.record()  # read when the audit starts (and kept by this StoredModel)
    meanwhile = store.resolve(TINY_ID).reload_record()  # another command, e.g. eval --save
    meanwhile.operating_point = {"class": "covid", "threshold": 0.3}
    store.StoredModel(stored.root).write_record(meanwhile)
    assert append_audit(stored, {"model": TINY_ID, "verdict": "none", "views": []})
    record = store.StoredModel(stored.root).record()
    assert record.operating_point == {"class": "covid", "threshold": 0.3}
    assert record.audits and record.audits[-1]["verdict"] == "none"
