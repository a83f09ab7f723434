"""One rule for reading a folder of class folders: download --from-dir and eval --data agree."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from cxr_covid import classes
from cxr_covid.cli.app import app
from cxr_covid.data.catalog import is_xray
from cxr_covid.data.dataset import resolve_dataset
from cxr_covid.evaluation.testsets import folder_test_set
from tests.helpers import write_blob_png, write_class_folders

runner = CliRunner()
KAGGLE_NAMES = {"covid": "COVID", "normal": "Normal", "viral_pneumonia": "Viral Pneumonia"}


def _kaggle_like_folder(root: Path) -> Path:
    """The current Kaggle release as a user unzips it on a Mac: a wrapper folder, images/ with
    masks/ beside it, __MACOSX debris, a hidden folder, a text file."""
    wrapper = root / "COVID-19_Radiography_Dataset"
    rng = np.random.default_rng(0)
    for label, folder in KAGGLE_NAMES.items():
        for i in range(6):
            write_blob_png(wrapper / folder / "images" / f"{folder}-{i}.png", label, 16, rng)
        # Lung masks (not X-rays), a thumbnail cache and macOS debris, all image-named.
        shutil.copytree(wrapper / folder / "images", wrapper / folder / "masks")
        write_blob_png(wrapper / folder / "images" / ".thumbs" / "t.png", label, 16, rng)
    write_class_folders(root / "__MACOSX" / wrapper.name, 2, 16, seed=7)
    (wrapper / "README.md.txt").write_text("Kaggle readme\n")
    return root


def test_eval_data_and_download_from_dir_read_a_folder_alike(tmp_path: Path) -> None:
    root = _kaggle_like_folder(tmp_path / "kaggle")

    evaluated = folder_test_set(root, classes.STUDY_CLASSES)
    by_eval = {
        (p.relative_to(root).as_posix(), label)
        for p, label in zip(evaluated.paths, evaluated.labels, strict=True)
    }

    result = runner.invoke(app, ["download", "--from-dir", str(root), "--name", "kaggle"])
    assert result.exit_code == 0, result.stderr
    by_download = {
        (row.path.removeprefix("images/"), row.label) for row in resolve_dataset("kaggle").rows()
    }

    assert by_eval == by_download
    assert len(by_eval) == 18  # 6 per class: no masks, no thumbnails, no __MACOSX copies
    assert {label for _path, label in by_eval} == set(classes.STUDY_CLASSES)
    assert all("/images/" in path for path, _label in by_eval)


def test_the_rule_itself() -> None:
    assert is_xray("COVID/images/COVID-1.png")
    assert is_xray("covid/scan.DCM")
    assert not is_xray("COVID/masks/COVID-1.png")
    assert not is_xray("COVID/Lung_Masks/COVID-1.png")
    assert not is_xray("__MACOSX/COVID/COVID-1.png")
    assert not is_xray("COVID/.thumbs/COVID-1.png")
    assert not is_xray("COVID/.COVID-1.png")
    assert not is_xray("COVID/notes.txt")
