"""`cxr-covid calibrate`: fit the temperature and the out-of-distribution guard of a stored
model from its own dataset, read from the image files (for models trained before `train` did
it, or to refit). The fitting itself lives in cxr_covid.inference.scoring; this module only
finds the model's validation and training images, which is evaluation's business.
"""

from __future__ import annotations

import numpy as np

from cxr_covid.errors import DataError
from cxr_covid.evaluation.testsets import check_split, dataset_test_set
from cxr_covid.inference import ood, scoring
from cxr_covid.models import store


def fit_for_stored(
    stored: store.StoredModel,
    *,
    batch_size: int = 32,
    quantile: float = ood.DEFAULT_QUANTILE,
    allow_split_change: bool = False,
) -> tuple[scoring.FittedGuards, list[str]]:
    """`cxr-covid calibrate`: fit temperature and guard from the model's own dataset (read
    from the image files), and save them in its record."""
    record = stored.record()
    name = record.dataset.get("name")
    if not name:
        raise DataError(
            f"model {record.id} does not record which dataset it was trained on, so its "
            "validation split is unknown: calibration needs it"
        )
    val = dataset_test_set(str(name), "val")
    train = dataset_test_set(str(name), "train")
    notes = check_split(record, val, allow_split_change)
    index = {c: i for i, c in enumerate(record.classes)}
    unknown = sorted(set(val.labels + train.labels) - set(index))
    if unknown:
        raise DataError(f"dataset {name!r} holds classes the model does not know: {unknown}")
    model = stored.load()
    prep = record.prep
    val_features = scoring.features_of(model, scoring.file_batches(val.paths, prep, batch_size))
    train_features = scoring.features_of(model, scoring.file_batches(train.paths, prep, batch_size))
    fitted = scoring.fit_from_features(
        model,
        train_features,
        np.array([index[c] for c in train.labels], dtype=np.int64),
        val_features,
        np.array([index[c] for c in val.labels], dtype=np.int64),
        f"dataset {name}",
        quantile,
    )
    record = stored.reload_record()  # keep anything written meanwhile
    notes += scoring.apply(record, fitted)
    stored.write_record(record)
    return fitted, notes
