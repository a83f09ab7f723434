"""`models card`: MODEL_CARD.md from the record, every stored evaluation with its interval."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from cxr_covid.cli import app
from cxr_covid.models import store
from cxr_covid.models.records import SavedEvaluation
from cxr_covid.sharing.card import render
from tests.api.conftest import TINY_ID
from tests.helpers import build_dataset

runner = CliRunner()

EVALUATION = {
    "split": "test",
    "source": "dataset:blobs",
    "dataset": "blobs",
    "accuracy": 29 / 33,
    "correct": 29,
    "n": 33,
    "per_class": {
        "covid": {"accuracy": 0.8, "correct": 8, "n": 10, "auc": 0.91},
        "normal": {"accuracy": 1.0, "correct": 12, "n": 12, "auc": 0.99},
        "viral_pneumonia": {"accuracy": 9 / 11, "correct": 9, "n": 11, "auc": 0.95},
    },
    "balanced_accuracy": 0.872,
    "macro_f1": 0.88,
    "confusion_matrix": [[8, 1, 1], [0, 12, 0], [1, 1, 9]],
    "created": "2026-01-01T00:00:00+00:00",
}


def _record_with_history(cxr_home: Path) -> store.ModelRecord:
    dataset = build_dataset(cxr_home, "blobs", per_class=4)
    info = dataset.info()
    info.update(
        {
            "split_sha256": "s" * 64,
            "counts": {"train": {"covid": 3, "normal": 3, "viral_pneumonia": 3}},
            "archive": {"sha256": "a" * 64, "bytes": 1234},
            "split": {"fractions": [0.7, 0.15, 0.15], "seed": 42},
        }
    )
    dataset.write_info(info)
    stored = store.resolve(TINY_ID)
    record = stored.record()
    record.dataset = {
        "name": "blobs",
        "manifest_sha256": "m" * 64,
        "split_sha256": "s" * 64,
        "val_images": 20,
    }
    record.metrics = {"best_epoch": 3, "best_val_accuracy": 0.9}
    record.training = {"epochs": 30, "batch_size": 32, "seed": 42, "augment": False}
    record.evaluations = [
        SavedEvaluation.from_dict(EVALUATION),
        SavedEvaluation.from_dict(
            {"kind": "subgroups", "groups": {"adults": {"n": 5, "correct": 4}}}
        ),
    ]
    stored.write_record(record)
    return record


def test_card_has_mitchell_sections_and_every_evaluation(tiny: Path, cxr_home: Path) -> None:
    _record_with_history(cxr_home)
    out = cxr_home / "card" / "MODEL_CARD.md"
    result = runner.invoke(app, ["models", "card", TINY_ID, "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    card = out.read_text()
    for section in (
        "## Model details",
        "## Intended use",
        "## Out-of-scope use",
        "## Training data",
        "## Evaluation results",
        "## Ethical considerations and caveats",
        "## Licences and attribution of the data",
    ):
        assert section in card, section
    assert "not a diagnostic device" in card
    # Counts and the Wilson interval of 29/33, computed, not copied from the record.
    assert "87.88% (29/33) [72.7-95.2]" in card
    assert "80.00% (8/10) [49.0-94.3]" in card
    assert "| COVID-19 | 8 | 1 | 1 |" in card
    assert "18.00% (18/20)" not in card and "90.00% (18/20)" in card
    # Training data: hashes, archive, split, counts from the matching dataset.json.
    assert "s" * 64 in card and "m" * 64 in card and "a" * 64 in card
    assert "| train | 3 | 3 | 3 |" in card
    # An evaluation kind the card does not know is still shown, as it is.
    assert "- adults:" in card and "subgroups" in card
    # Caveats and licences.
    assert "paediatric" in card.lower() and "33 COVID-19 test images" in card
    assert "CC BY 4.0" in card and "CC BY 3.0" in card and "own terms" in card


@dataclass
class _LaterRecord(store.ModelRecord):
    """A record as a later version (or another helper's feature) may extend it."""

    later_analysis: dict[str, Any] = field(default_factory=dict)


def test_unknown_record_fields_are_rendered(tiny: Path) -> None:
    record = store.resolve(TINY_ID).record()
    assert "No held-out evaluation is stored yet" in render(record)
    assert "## Further analyses" not in render(record)
    fields_of = {f.name: getattr(record, f.name) for f in fields(record)}
    later = _LaterRecord(**fields_of, later_analysis={"temperature": 1.7, "n": 300})
    rendered = render(later)
    assert "## Further analyses" in rendered
    assert "### Later analysis" in rendered and "- temperature: 1.7" in rendered


def test_card_says_whether_the_model_is_calibrated_and_guarded(tiny: Path) -> None:
    record = store.resolve(TINY_ID).record()
    plain = render(record)
    assert "## Calibration, decisions and the out-of-distribution guard" in plain
    record.calibration = {"temperature": 1.7, "n": 30, "fitted_on": "validation split"}
    calibrated = render(record)
    assert "temperature 1.7" in calibrated and "uncalibrated" not in calibrated


def test_card_ignores_a_dataset_remade_under_the_same_name(tiny: Path, cxr_home: Path) -> None:
    _record_with_history(cxr_home)
    stored = store.resolve(TINY_ID)
    record = stored.record()
    record.dataset["split_sha256"] = "other"
    stored.write_record(record)
    result = runner.invoke(app, ["models", "card", TINY_ID, "-o", "-"])
    assert result.exit_code == 0, result.stderr
    assert "a" * 64 not in result.stdout  # the other dataset's archive is not claimed
    assert "## Training data" in result.stdout
