"""A small trained model store, built once per session and copied into each test's home."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from cxr_covid import classes
from tests.helpers import build_dataset

IMAGE_SIZE = 32
DATASET = "blobs"
GOOD = "baseline-good"
WEAK = "baseline-weak"


def _train_and_save(model_id: str, epochs: int, seed: int, created: str) -> None:
    import keras

    from cxr_covid import models
    from cxr_covid.data.dataset import resolve_dataset
    from cxr_covid.data.images import Preprocessing, load_for_model
    from cxr_covid.data.manifest import select, split_hash
    from cxr_covid.models import store

    dataset = resolve_dataset(DATASET)
    rows = dataset.rows()
    train = select(rows, "train")
    prep = Preprocessing(image_size=IMAGE_SIZE)
    labels = list(classes.STUDY_CLASSES)
    x = np.stack([load_for_model(dataset.file(r), prep) for r in train]).astype("float32")
    y = np.array([labels.index(r.label) for r in train])
    keras.utils.set_random_seed(seed)
    model = models.build("baseline", IMAGE_SIZE, len(labels))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    if epochs:
        model.fit(x, y, epochs=epochs, batch_size=8, verbose=0)
    record = store.ModelRecord(
        id=model_id,
        architecture="baseline",
        classes=labels,
        preprocessing=prep.to_dict(),
        last_conv_layer="last_conv",
        dataset={"name": DATASET, "split_sha256": split_hash(rows)},
        training={"augment": False, "epochs": epochs, "seed": seed},
        created=created,
    )
    store.save(model, record)


@pytest.fixture(scope="session")
def trained_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A home with dataset `blobs` (20 images per class, 4 per class in test) and two models:
    one fitted for a few epochs, one left untrained (so McNemar has something to compare)."""
    home = tmp_path_factory.mktemp("eval-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CXR_COVID_HOME", str(home))
        build_dataset(home, DATASET, per_class=20, size=IMAGE_SIZE)
        _train_and_save(WEAK, epochs=0, seed=1, created="2026-01-01T00:00:00+00:00")
        _train_and_save(GOOD, epochs=12, seed=0, created="2026-01-02T00:00:00+00:00")
    yield home


@pytest.fixture
def eval_home(cxr_home: Path, trained_home: Path) -> Path:
    """This test's own copy of the trained home (tests may write evaluations into records)."""
    for part in ("datasets", "models"):
        shutil.copytree(trained_home / part, cxr_home / part)
    return cxr_home
