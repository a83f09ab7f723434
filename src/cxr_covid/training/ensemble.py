"""`cxr-covid models ensemble`: stored models made into one stored model that averages their
probabilities.

    result = make_ensemble(group="plain-mixed", name="plain-mixed-ensemble")
    result = make_ensemble(member_ids=["a-s42", "b-s7"], name="ab")

The members are a `train --seeds` group (every stored model whose record names the group,
in seed order) or models chosen by id. They must agree on what an image means to them:
classes (in order) and preprocessing (size, resize, input view, normalisation); each must be
a plain network (no ensemble of ensembles). The graph (models/ensemble.py) is saved as an
ordinary model folder in the store, with a record whose `members` say which models it holds,
so every command that takes a model takes it. Like `train`, it fits its calibration and OOD
guard on its own output, from the members' dataset (training split for the guard, validation
split for the temperature), unless `calibrate=False`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cxr_covid.data.dataset import check_name
from cxr_covid.errors import DataError, ModelError, UsageError
from cxr_covid.models import ensemble, store
from cxr_covid.models.records import recipe_of_training
from cxr_covid.progress import NULL, Reporter

# Preprocessing keys the members must share: each changes the pixels a network is given.
SHARED_PREPROCESSING = ("image_size", "resize", "color", "scale", "input", "normalize")


@dataclass(frozen=True)
class EnsembleResult:
    model: str
    members: list[dict[str, Any]]
    val_accuracy: float | None  # of the averaged output, on the validation split
    calibration: str  # probabilities label (calibrated, temperature) or "uncalibrated"
    ood_guard: bool
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "members": self.members,
            "val_accuracy": self.val_accuracy,
            "calibration": self.calibration,
            "ood_guard": self.ood_guard,
            "notes": self.notes,
            "next": f"cxr-covid eval {self.model}",
        }


def group_members(group: str) -> list[store.StoredModel]:
    """The stored models of a `train --seeds` group, in seed order."""
    found: list[tuple[int, str, store.StoredModel]] = []
    for stored in store.list_models():
        try:
            record = stored.record()
        except ModelError:
            continue  # a broken record is `models list`'s business, not a member
        if record.training.get("group") == group and not record.members:
            seed = record.training.get("seed")
            found.append((seed if isinstance(seed, int) else -1, stored.id, stored))
    if not found:
        raise ModelError(
            f"no stored models in group {group!r} (a group is made by "
            "`cxr-covid train --seeds N --name GROUP`; `cxr-covid models list` shows the store)"
        )
    return [stored for _, _, stored in sorted(found, key=lambda item: item[:2])]


def resolve_members(group: str | None, member_ids: Sequence[str]) -> list[store.StoredModel]:
    """The member models from a group name or explicit ids (not both)."""
    if group and member_ids:
        raise UsageError("give a GROUP or --member ids, not both")
    if not group and not member_ids:
        raise UsageError("name a `train --seeds` GROUP, or the members with --member ID (twice+)")
    if group:
        return group_members(group)
    repeated = sorted({m for m in member_ids if list(member_ids).count(m) > 1})
    if repeated:
        raise UsageError(f"--member {repeated[0]} is given more than once")
    return [store.resolve(m) for m in member_ids]


def check_members(records: Sequence[store.ModelRecord], what: str) -> None:
    """Refuse members that cannot be averaged: fewer than two, an ensemble among them, or
    another class list or preprocessing than the first member's."""
    if len(records) < 2:
        only = records[0].id if records else "none"
        raise UsageError(f"an ensemble needs at least two members; {what} has one ({only})")
    first = records[0]
    for record in records:
        if record.members or record.architecture == ensemble.ARCHITECTURE:
            raise ModelError(f"member {record.id} is itself an ensemble: list its members instead")
    for record in records[1:]:
        if record.classes != first.classes:
            raise ModelError(
                f"members differ in classes: {first.id} has {', '.join(first.classes)}, "
                f"{record.id} has {', '.join(record.classes)}"
            )
        mine, theirs = first.prep.to_dict(), record.prep.to_dict()
        for key in SHARED_PREPROCESSING:
            if mine.get(key) != theirs.get(key):
                raise ModelError(
                    f"members differ in preprocessing ({key}): {first.id} has "
                    f"{mine.get(key)!r}, {record.id} has {theirs.get(key)!r}"
                )


def _member_summary(record: store.ModelRecord) -> dict[str, Any]:
    """What the ensemble's record keeps of a member: enough to find and judge it."""
    return {
        "id": record.id,
        "seed": record.training.get("seed"),
        "group": record.training.get("group"),
        "architecture": record.architecture,
        "created": record.created,
        "last_conv_layer": record.last_conv_layer,
        "best_epoch": record.metrics.get("best_epoch"),
        "best_val_accuracy": record.metrics.get("best_val_accuracy"),
        "temperature": record.calibration.get("temperature"),
    }


def _shared_training(records: Sequence[store.ModelRecord], group: str | None) -> dict[str, Any]:
    """The recipe options every member agrees on (what the audit's control retrains), and
    what the ensemble is; never `group`, so `eval --group` does not count it as a seed."""
    recipes = [recipe_of_training(r.training) for r in records]
    shared = {k: v for k, v in recipes[0].items() if all(r[k] == v for r in recipes)}
    return {
        **shared,
        "ensemble": {
            "of_group": group,
            "members": len(records),
            "combine": "mean of the members' softmax probabilities",
            "differing_options": sorted(set(recipes[0]) - set(shared)),
        },
    }


def _shared_dataset(records: Sequence[store.ModelRecord]) -> dict[str, Any]:
    """The members' dataset record when they share one (same name and manifest), else {}."""
    first = records[0].dataset
    same = all(
        r.dataset.get("name") == first.get("name")
        and r.dataset.get("manifest_sha256") == first.get("manifest_sha256")
        for r in records
    )
    return dict(first) if same and first.get("name") else {}


def fit_guards(
    model: Any,
    record: store.ModelRecord,
    augmented: bool,
    batch_size: int,
    reporter: Reporter = NULL,
) -> Any:
    """Calibration and the OOD guard of the ensemble's own output, as `train` fits them:
    from the cached training and validation splits of the members' dataset."""
    from cxr_covid.data import pipeline
    from cxr_covid.data.dataset import resolve_dataset
    from cxr_covid.data.manifest import manifest_hash
    from cxr_covid.inference import scoring

    name = record.dataset.get("name")
    if not name:
        raise DataError(
            "the members were not trained on one recorded dataset, so the ensemble has no "
            "validation split to calibrate on: pass --no-calibrate"
        )
    try:
        dataset = resolve_dataset(str(name))
    except DataError as exc:
        raise DataError(f"{exc}; the ensemble is calibrated on it: pass --no-calibrate") from exc
    rows = dataset.rows()
    recorded = record.dataset.get("manifest_sha256")
    if recorded and manifest_hash(rows) != recorded:
        raise DataError(
            f"dataset {name!r} changed since the members were trained (manifest hash differs): "
            "its splits may mix their training and validation images; pass --no-calibrate"
        )
    common: dict[str, Any] = {"rows": rows, "classes": record.classes, "reporter": reporter}
    prep = record.prep
    train_split = pipeline.cache_split(
        dataset, "train", prep, include_augmented=augmented, **common
    )
    val_split = pipeline.cache_split(dataset, "val", prep, **common)
    return scoring.fit_for_training(model, train_split, val_split, str(name), batch_size)


def make_ensemble(
    group: str | None = None,
    member_ids: Sequence[str] = (),
    *,
    name: str | None = None,
    calibrate: bool = True,
    batch_size: int = 32,
    reporter: Reporter = NULL,
) -> EnsembleResult:
    """Build, calibrate and store the ensemble of a group's models or of `member_ids`."""
    if name is None and not group:
        raise UsageError("--name is required when the members are given with --member")
    model_id = check_name(name or f"{group}-ensemble")
    if (store.model_dir(model_id) / store.RECORD_FILE).exists():
        raise ModelError(f"a model named {model_id!r} already exists (use another --name)")
    stored_members = resolve_members(group, member_ids)
    records = [m.record() for m in stored_members]
    check_members(records, f"group {group!r}" if group else "the --member list")
    networks = [m.load() for m in stored_members]
    first = records[0]
    model = ensemble.build_graph(networks, first.prep.image_size)
    layers = {r.last_conv_layer for r in records}
    record = store.ModelRecord(
        id=model_id,
        architecture=ensemble.ARCHITECTURE,
        classes=list(first.classes),
        preprocessing=first.prep.to_dict(),
        # Grad-CAM explains this layer in each member (it falls back to a member's last
        # feature map where the members are different architectures).
        last_conv_layer=layers.pop() if len(layers) == 1 else first.last_conv_layer,
        dataset=_shared_dataset(records),
        training=_shared_training(records, group),
        members=[_member_summary(r) for r in records],
        versions=store.library_versions(),
    )
    notes: list[str] = []
    val_accuracy = None
    if calibrate:
        from cxr_covid.inference import scoring

        augmented = all(bool(r.training.get("augment", False)) for r in records)
        guards = fit_guards(model, record, augmented, batch_size, reporter)
        notes += scoring.apply(record, guards)
        val_accuracy = guards.val_accuracy
        # No epochs to choose from: the listing's validation accuracy is the averaged
        # output's on the validation split.
        record.metrics = {"best_val_accuracy": val_accuracy}
        record.training["calibration_seconds"] = round(guards.seconds, 3)
    else:
        notes.append("not calibrated (--no-calibrate): run `cxr-covid calibrate` to fit it")
    store.save(model, record)
    from cxr_covid.inference.calibration import Calibration
    from cxr_covid.inference.scoring import probabilities_label

    label = probabilities_label(Calibration.from_record(record.calibration or None))
    return EnsembleResult(model_id, record.members, val_accuracy, label, bool(record.ood), notes)
