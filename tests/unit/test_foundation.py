"""Home resolution, atomic writes, class aliases, the model registry."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cxr_covid import atomic, classes, paths


def test_home_env_override(cxr_home: Path) -> None:
    assert paths.home() == cxr_home.resolve()
    assert paths.models_dir() == cxr_home.resolve() / "models"


def test_home_default_is_platform_user_data(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CXR_COVID_HOME")
    import platformdirs

    assert paths.home() == Path(platformdirs.user_data_dir("cxr-covid", appauthor=False))


def test_atomic_write_leaves_old_content_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "f.txt"
    atomic.write_text(target, "old")
    with pytest.raises(RuntimeError), atomic.open_for_write(target) as handle:
        handle.write("new, half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["f.txt"]


def test_building_dir_replaces_whole_or_not_at_all(tmp_path: Path) -> None:
    target = tmp_path / "d"
    with atomic.building_dir(target) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(RuntimeError), atomic.building_dir(target, replace=True) as tmp:
        (tmp / "a").write_text("2")
        raise RuntimeError("boom")
    assert (target / "a").read_text() == "1"
    with atomic.building_dir(target, replace=True) as tmp:
        (tmp / "a").write_text("3")
    assert (target / "a").read_text() == "3"
    assert sorted(os.listdir(tmp_path)) == ["d"]


@pytest.mark.parametrize(
    ("folder", "expected"),
    [
        ("COVID-19", "covid"),
        ("COVID", "covid"),
        ("covid19", "covid"),
        ("NORMAL", "normal"),
        ("Normal", "normal"),
        ("Viral Pneumonia", "viral_pneumonia"),
        ("PNEUMONIA", "viral_pneumonia"),
        ("Lung_Opacity", "lung_opacity"),
        ("masks", None),
    ],
)
def test_class_aliases(folder: str, expected: str | None) -> None:
    assert classes.canonical(folder) == expected


def test_extra_aliases_win() -> None:
    assert classes.canonical("sick", {"sick": "covid"}) == "covid"


def test_registry_lists_the_study_architectures() -> None:
    from cxr_covid import models

    assert {"baseline", "inception", "inception-nb"} <= set(models.names())
    from cxr_covid.errors import UsageError

    with pytest.raises(UsageError, match="unknown architecture"):
        models.get("resnet9000")
    with pytest.raises(UsageError, match="too small"):
        models.build("baseline", 8, 3)
