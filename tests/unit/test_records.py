"""The model record's typed history and evaluations: older records read and write unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cxr_covid.errors import ModelError
from cxr_covid.models import store
from cxr_covid.models.records import SavedEvaluation

# A record as earlier versions wrote it: an evaluation without `correct` (the first format),
# one with the decision figures, a kind of entry this version does not know, a history
# with a metric it does not know, integers where floats could stand.
OLDER_RECORD = {
    "id": "old-1",
    "architecture": "baseline",
    "classes": ["covid", "normal", "viral_pneumonia"],
    "preprocessing": {"image_size": 64, "resize": "bilinear", "color": "rgb", "scale": "0-1"},
    "last_conv_layer": "conv_last",
    "created": "2025-11-02T10:00:00+00:00",
    "format": 1,
    "dataset": {"name": "blobs", "val_images": 10},
    "training": {"epochs": 2},
    "history": {
        "loss": [1.1, 0.7],
        "accuracy": [0.4, 1],
        "val_loss": [1.0, 0.8],
        "val_accuracy": [0.5, 0.8],
        "seconds": [3, 2.5],
        "lr": [0.001, 0.0005],
    },
    "metrics": {"best_epoch": 2, "best_val_accuracy": 0.8},
    "evaluations": [
        {"split": "test", "source": "dataset blobs, test split", "accuracy": 0.8, "n": 10},
        {
            "split": "external",
            "source": "folder /x",
            "dataset": None,
            "split_sha256": None,
            "accuracy": 0.75,
            "accuracy_ci": [0.409, 0.929],
            "correct": 6,
            "n": 8,
            "per_class": {
                "covid": {
                    "accuracy": 1.0,
                    "accuracy_ci": [0.5, 1.0],
                    "correct": 4,
                    "n": 4,
                    "auc": None,
                },
            },
            "balanced_accuracy": 0.7,
            "macro_f1": 0.69,
            "confusion_matrix": [[4, 0], [2, 2]],
            "failed": 0,
            "created": "2025-11-03T10:00:00+00:00",
            "probabilities": "calibrated",
            "ood_flagged": None,
        },
        {"kind": "subgroups", "groups": {"adults": {"n": 5, "correct": 4}}},
    ],
    "calibration": {},
    "ood": {},
    "operating_point": {},
    "versions": {"cxr-covid": "0.1.0"},
    "sharing": {},
}


def _json(data: object) -> str:
    return json.dumps(data, indent=2, sort_keys=False, default=str) + "\n"


def test_an_older_record_is_written_back_byte_for_byte() -> None:
    record = store.ModelRecord.from_dict(json.loads(_json(OLDER_RECORD)))
    assert _json(record.to_dict()) == _json(OLDER_RECORD)


def test_the_seams_are_typed() -> None:
    record = store.ModelRecord.from_dict(json.loads(_json(OLDER_RECORD)))
    assert record.history.epochs == 2 and record.history.val_accuracy == [0.5, 0.8]
    assert record.history.extra == {"lr": [0.001, 0.0005]}
    first, second, other = record.evaluations
    assert (first.accuracy, first.n, first.correct, first.per_class) == (0.8, 10, None, {})
    assert second.per_class["covid"].correct == 4 and second.per_class["covid"].auc is None
    assert second.extra == {"probabilities": "calibrated", "ood_flagged": None}
    assert not other.is_standard and other.where == "subgroups"


def test_a_saved_record_round_trips_through_the_store(tmp_path: Path) -> None:
    stored = store.StoredModel(tmp_path / "old-1")
    stored.root.mkdir()
    stored.record_path.write_text(_json(OLDER_RECORD))
    stored.write_record(stored.record())
    assert stored.record_path.read_text() == _json(OLDER_RECORD)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("history", [1, 2], "history should be an object"),
        ("history", {"loss": 3}, "history should map each metric to a list"),
        ("history", {"loss": ["x"]}, "history.loss should be a number"),
        ("evaluations", {"n": 3}, "evaluations should be a list"),
        ("evaluations", ["x"], "evaluations[0] should be an object"),
        ("evaluations", [{"n": "ten"}], "evaluations[0].n should be a whole number"),
    ],
)
def test_a_damaged_record_says_what_is_wrong(field: str, value: object, message: str) -> None:
    with pytest.raises(ModelError, match=message.replace("[", r"\[").replace("]", r"\]")):
        store.ModelRecord.from_dict({**OLDER_RECORD, field: value})


@pytest.mark.parametrize("field", ["calibration", "ood", "operating_point", "sharing"])
def test_a_damaged_decision_or_sharing_field_is_a_broken_record(tmp_path: Path, field: str) -> None:
    stored = store.StoredModel(tmp_path / "old-1")
    stored.root.mkdir()
    stored.record_path.write_text(_json({**OLDER_RECORD, field: []}))
    with pytest.raises(ModelError, match=f"broken model record: {field} should be a dict"):
        stored.record()


def test_a_new_evaluation_writes_its_keys_in_order() -> None:
    entry = SavedEvaluation(split="test", accuracy=0.5, n=2, created="now")
    assert list(entry.to_dict()) == ["split", "created", "accuracy", "n"]
