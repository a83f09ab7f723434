"""Where things live: one home holding the datasets and the model store.

`CXR_COVID_HOME` overrides the location; otherwise the platform's user data folder
(platformdirs). Layout (docs/home.md):

    <home>/datasets/<name>/   one folder per dataset (manifest.csv, dataset.json, images/...)
    <home>/models/<id>/       one folder per trained model (model.keras, model.json)
    <home>/runs/<id>/         training in progress (checkpoints), for --resume
    <home>/reproduce/<run>/   reports written by `cxr-covid reproduce`
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

HOME_ENV = "CXR_COVID_HOME"


def home() -> Path:
    """The tool's home folder (not created here)."""
    override = os.environ.get(HOME_ENV)
    if override:
        return Path(override).expanduser().resolve()
    return Path(platformdirs.user_data_dir("cxr-covid", appauthor=False))


def datasets_dir() -> Path:
    return home() / "datasets"


def models_dir() -> Path:
    return home() / "models"


def runs_dir() -> Path:
    return home() / "runs"


def reproduce_dir() -> Path:
    return home() / "reproduce"


def ensure(path: Path) -> Path:
    """Create `path` (and parents) if needed and return it (WriteError if it cannot be)."""
    from cxr_covid.atomic import writing

    with writing(path):
        path.mkdir(parents=True, exist_ok=True)
    return path
