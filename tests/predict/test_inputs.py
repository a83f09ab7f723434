"""PATH... expansion shared by predict and heatmap: files, folders, -r, globs."""

from __future__ import annotations

from pathlib import Path

import pytest

from cxr_covid.errors import DataError, UsageError
from cxr_covid.inference.files import expand_inputs, output_stems


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for name in [
        "a.png",
        "b.JPG",
        "notes.txt",
        "data.csv",
        ".hidden.png",
        "sub/c.png",
        "sub/deeper/d.dcm",
        "sub/e.md",
        ".git/f.png",
    ]:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    return tmp_path


def names(paths: list[Path], root: Path) -> list[str]:
    return [p.relative_to(root).as_posix() for p in paths]


def test_folder_takes_its_images_and_skips_other_files(tree: Path) -> None:
    assert names(expand_inputs([str(tree)]), tree) == ["a.png", "b.JPG"]


def test_recursive_folder_goes_down_but_not_into_hidden_folders(tree: Path) -> None:
    found = names(expand_inputs([str(tree)], recursive=True), tree)
    assert found == ["a.png", "b.JPG", "sub/c.png", "sub/deeper/d.dcm"]


def test_a_named_file_is_taken_whatever_its_suffix(tree: Path) -> None:
    assert names(expand_inputs([str(tree / "notes.txt")]), tree) == ["notes.txt"]


def test_globs_expand_even_when_the_shell_did_not(tree: Path) -> None:
    assert names(expand_inputs([str(tree / "*.png")]), tree) == ["a.png"]
    deep = expand_inputs([str(tree / "**" / "*.png")], recursive=True)
    assert names(deep, tree) == ["a.png", "sub/c.png"]


def test_duplicates_are_dropped_and_order_is_kept(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tree)
    found = expand_inputs(["b.JPG", str(tree / "a.png"), str(tree), "./a.png"])
    assert [p.name for p in found] == ["b.JPG", "a.png"]


def test_missing_path_is_a_usage_error_and_a_folder_without_images_a_data_error(
    tree: Path,
) -> None:
    with pytest.raises(UsageError, match="no such file"):
        expand_inputs([str(tree / "missing.png")])
    (tree / "only" / "inner").mkdir(parents=True)
    (tree / "only" / "inner" / "z.png").write_bytes(b"x")
    with pytest.raises(DataError, match="add -r"):
        expand_inputs([str(tree / "only")])
    with pytest.raises(UsageError, match="no image files"):
        expand_inputs([str(tree / "*.gif")])


def test_output_stems_are_unique() -> None:
    plain = [Path("x/a.png"), Path("y/b.png")]
    assert output_stems(plain) == [Path("a"), Path("b")]
    clash = [Path("/d/covid/1.png"), Path("/d/normal/1.png"), Path("/d/normal/1.jpg")]
    assert [s.as_posix() for s in output_stems(clash)] == [
        "covid/1",
        "normal/1_png",
        "normal/1_jpg",
    ]


def test_a_symlink_loop_is_visited_once(tree: Path) -> None:
    (tree / "sub" / "loop").symlink_to(tree, target_is_directory=True)
    found = names(expand_inputs([str(tree)], recursive=True), tree)
    assert found == ["a.png", "b.JPG", "sub/c.png", "sub/deeper/d.dcm"]
