"""A sources.csv that travels with the data is used without being named, and said on stderr;
`reproduce --sources FILE` records where the images come from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cxr_covid import classes
from cxr_covid.cli import app
from cxr_covid.data.sources_lookup import find_sources
from tests.data.zips import LAYOUTS, layout_zip, with_member
from tests.helpers import write_class_folders

runner = CliRunner()
PER_CLASS = 8


def _folder_lines() -> list[str]:
    lines = ["path,source,age_group"]
    for label in classes.STUDY_CLASSES:
        for i in range(1, PER_CLASS + 1):
            lines.append(f"{label}/{label}-{i}.png,{'rsna' if label == 'normal' else 'kermany'},")
    return lines


def _zip_lines() -> bytes:
    lines = ["path,source,age_group"]
    for label, pattern in LAYOUTS["first"]:
        # Not what the release's layout implies (kaggle-covid, kermany): seen only if read.
        source = "hospital-a" if label == "covid" else "rsna"
        lines += [f"{pattern.format(i=i)},{source},adult" for i in range(1, PER_CLASS + 1)]
    return ("\n".join(lines) + "\n").encode()


def _download(*args: str) -> tuple[Any, dict[str, Any]]:
    result = runner.invoke(app, ["download", *args, "--json"])
    assert result.exit_code == 0, result.output
    return result, json.loads(result.stdout)


def test_sources_csv_inside_a_from_dir_folder_is_used_and_said(tmp_path: Path) -> None:
    root = write_class_folders(tmp_path / "mine", PER_CLASS, 24)
    (root / "sources.csv").write_text("\n".join(_folder_lines()) + "\n")
    result, data = _download("--from-dir", str(root))
    assert data["provenance"]["basis"] == {"sources-csv": 3 * PER_CLASS}
    assert data["provenance"]["collections"]["normal"] == {"rsna": PER_CLASS}
    assert f"{root / 'sources.csv'} (found with the data" in result.stderr


def test_no_sources_ignores_it(tmp_path: Path) -> None:
    root = write_class_folders(tmp_path / "mine", PER_CLASS, 24)
    (root / "sources.csv").write_text("\n".join(_folder_lines()) + "\n")
    result, data = _download("--from-dir", str(root), "--no-sources")
    assert "sources-csv" not in data["provenance"].get("basis", {})
    assert "found with the data" not in result.stderr


def test_sources_csv_beside_or_inside_a_zip_is_used(tmp_path: Path) -> None:
    beside = tmp_path / "a" / "release.zip"
    beside.parent.mkdir()
    beside.write_bytes(layout_zip("first", PER_CLASS))
    (beside.parent / "sources.csv").write_bytes(_zip_lines())
    result, data = _download("--from-zip", str(beside), "--name", "beside")
    assert data["provenance"]["collections"]["covid"] == {"hospital-a": PER_CLASS}
    assert "found with the data" in result.stderr

    inside = tmp_path / "b" / "release.zip"
    inside.parent.mkdir()
    inside.write_bytes(
        with_member(
            layout_zip("first", PER_CLASS),
            "COVID-19 Radiography Database/sources.csv",
            _zip_lines(),
        )
    )
    result, data = _download("--from-zip", str(inside), "--name", "inside")
    assert data["provenance"]["collections"]["covid"] == {"hospital-a": PER_CLASS}
    assert "release.zip:COVID-19 Radiography Database/sources.csv" in result.stderr


def test_an_attribution_list_named_otherwise_is_not_taken(tmp_path: Path) -> None:
    """The release's SOURCES.csv (attribution) is another file: only `sources.csv` counts."""
    root = write_class_folders(tmp_path / "mine", PER_CLASS, 24)
    (root / "SOURCES.csv").write_text("file,credit\nx.png,someone\n")
    assert find_sources("dir", root) is None


def test_reproduce_passes_sources_to_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}

    def fake_run(options: Any, reporter: Any) -> Any:
        seen["options"] = options
        raise SystemExit(0)

    monkeypatch.setattr("cxr_covid.reproduce.run.run", fake_run)
    sources = tmp_path / "s.csv"
    sources.write_text("path,source\nx.png,rsna\n")
    runner.invoke(app, ["reproduce", "--sources", str(sources), "--no-audit"])
    assert seen["options"].sources == sources and seen["options"].find_sources
    runner.invoke(app, ["reproduce", "--no-sources", "--no-audit"])
    assert seen["options"].sources is None and not seen["options"].find_sources
    both = runner.invoke(app, ["reproduce", "--sources", str(sources), "--no-sources"])
    assert both.exit_code == 2


def test_reproduce_from_zip_records_the_sources(tmp_path: Path) -> None:
    """The data step of reproduce: a dataset from a zip, with --sources; then, reused, the
    sources are attached to it."""
    from cxr_covid import study
    from cxr_covid.data.dataset import resolve_dataset
    from cxr_covid.progress import NULL
    from cxr_covid.reproduce.data_steps import ensure_dataset, settings_of
    from cxr_covid.reproduce.results import ReproduceOptions
    from cxr_covid.reproduce.run_folder import RunState

    archive = tmp_path / "release.zip"
    archive.write_bytes(layout_zip("first", PER_CLASS))
    sources = tmp_path / "elsewhere" / "mine.csv"
    sources.parent.mkdir()
    sources.write_bytes(_zip_lines())
    options = ReproduceOptions(preset="quick", from_zip=archive, sources=sources)
    settings = settings_of(options, study.preset("quick"), "dev")
    dataset = ensure_dataset(
        options, settings, RunState.open(tmp_path / "run", settings, False), NULL
    )
    collections = {row.collection for row in dataset.rows()}
    assert collections == {"hospital-a", "rsna"}

    # Reused without sources, then given them: attached to the dataset in the home.
    plain = ReproduceOptions(preset="quick", from_zip=archive, find_sources=False)
    settings = settings_of(plain, study.preset("quick"), "plain")
    ensure_dataset(plain, settings, RunState.open(tmp_path / "run2", settings, False), NULL)
    assert "hospital-a" not in {r.collection for r in resolve_dataset("plain").rows()}
    again = ReproduceOptions(preset="quick", from_zip=archive, sources=sources)
    ensure_dataset(again, settings, RunState.open(tmp_path / "run3", settings, False), NULL)
    assert {r.collection for r in resolve_dataset("plain").rows()} == {"hospital-a", "rsna"}
