"""Where every image comes from: workbooks, the first release, --sources, attaching later,
the manifest's format 2, and the confounding warnings."""

from __future__ import annotations

import csv
import io
import json
import shutil
import zipfile
from pathlib import Path

import pytest
from openpyxl import Workbook
from typer.testing import CliRunner

from cxr_covid import classes
from cxr_covid.cli import app
from cxr_covid.data import confounding
from cxr_covid.data import provenance as prov
from cxr_covid.data.augment import augment_dataset
from cxr_covid.data.dataset import resolve_dataset
from cxr_covid.data.ingest import download_dataset
from cxr_covid.data.manifest import (
    REQUIRED_COLUMNS,
    ManifestRow,
    manifest_hash,
    read_manifest,
    split_hash,
)
from cxr_covid.errors import EXIT_DATA, EXIT_USAGE, DataError
from tests.conftest import SHARED_DATA
from tests.data.zips import layout_zip
from tests.helpers import write_class_folders
from tests.json_docs import assert_documented

runner = CliRunner()

ROOT = "COVID-19_Radiography_Dataset"
KERMANY_URL = "https://www.kaggle.com/paultimothymooney/chest-xray-pneumonia"
RSNA_URL = "https://www.kaggle.com/c/rsna-pneumonia-detection-challenge/data"
BIMCV_URL = "https://bimcv.cipf.es/bimcv-projects/bimcv-covid19/#1590858128006-9e640421-6711"
SIRM_URL = "https://sirm.org/category/senza-categoria/covid-19/"


def workbook_bytes(rows: list[tuple[str, str]], *, title_rows: int = 0) -> bytes:
    """A `<Class>.metadata.xlsx` as the release ships it: FILE NAME, FORMAT, SIZE, URL."""
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    for _ in range(title_rows):
        sheet.append(["COVID-19 Radiography Database metadata"])
    sheet.append(["FILE NAME", "FORMAT", "SIZE", "URL"])
    for name, url in rows:
        sheet.append([name, "PNG", "256*256", url])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def current_zip_with_workbooks(
    per_class: int = 10, workbooks: dict[str, bytes] | None = None
) -> bytes:
    """The current layout (tests/data/zips.py) plus workbooks beside the class folders."""
    base = layout_zip("current", per_class)
    buffer = io.BytesIO(base)
    with zipfile.ZipFile(buffer, "a") as archive:
        for name, data in (workbooks or {}).items():
            archive.writestr(f"{ROOT}/{name}", data)
    return buffer.getvalue()


def standard_workbooks(per_class: int = 10) -> dict[str, bytes]:
    half = per_class // 2
    return {
        # COVID-19: two adult repositories; FILE NAMEs in upper case, without extension.
        "COVID.metadata.xlsx": workbook_bytes(
            [
                (f"COVID-{i}".upper(), BIMCV_URL if i <= half else SIRM_URL)
                for i in range(1, per_class + 1)
            ]
        ),
        # Normal: half adults (RSNA), half children (Kermany); names with extension.
        "Normal.metadata.xlsx": workbook_bytes(
            [
                (f"Normal-{i}.png", RSNA_URL if i <= half else KERMANY_URL)
                for i in range(1, per_class + 1)
            ],
            title_rows=1,
        ),
        "Viral Pneumonia.metadata.xlsx": workbook_bytes(
            [(f"Viral Pneumonia-{i}", KERMANY_URL) for i in range(1, per_class + 1)]
        ),
        # A class not selected: its workbook must not raise "lists files that do not exist".
        "Lung_Opacity.metadata.xlsx": workbook_bytes([("Lung_Opacity-1", RSNA_URL)]),
    }


def _by_name(rows: list[ManifestRow]) -> dict[str, ManifestRow]:
    return {Path(r.path).stem: r for r in rows}


# --- vocabulary -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "collection"),
    [
        (KERMANY_URL, "kermany"),
        ("https://data.mendeley.com/datasets/rscbjbr9sj/2", "kermany"),
        (RSNA_URL, "rsna"),
        (BIMCV_URL, "bimcv"),
        ("https://bimcv.cipf.es/bimcv-projects/padchest/", "padchest"),
        ("https://github.com/ml-workgroup/covid-19-image-repository/tree/master/png", "hannover"),
        (SIRM_URL, "sirm"),
        ("https://github.com/ieee8023/covid-chestxray-dataset", "cohen"),
        ("https://eurorad.org", "eurorad"),
        ("https://github.com/armiro/COVID-CXNet", "covid-cxnet"),
        ("https://github.com/agchung/Figure1-COVID-chestxray-dataset", "figure1-actualmed"),
        ("https://example.org/some/hospital", "unknown"),
        ("", "unknown"),
    ],
)
def test_urls_map_to_the_documented_vocabulary(url: str, collection: str) -> None:
    assert prov.collection_from_url(url) == collection
    assert collection in prov.COLLECTIONS


def test_every_collection_is_documented() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "provenance.md").read_text()
    for name in prov.COLLECTIONS:
        assert f"`{name}`" in text, name


def test_source_and_age_values_are_normalised() -> None:
    assert prov.normalise_collection("Kermany") == "kermany"
    assert prov.normalise_collection(RSNA_URL) == "rsna"
    assert prov.normalise_collection("Hospital-A") == "hospital-a"  # your own name, kept
    with pytest.raises(ValueError, match="neither a known collection"):
        prov.normalise_collection("two words")
    assert prov.normalise_age_group("paediatric") == prov.CHILD
    assert prov.normalise_age_group("Pediatric") == prov.CHILD
    assert prov.normalise_age_group("adults") == prov.ADULT
    with pytest.raises(ValueError, match="not child, adult or unknown"):
        prov.normalise_age_group("elderly")


# --- workbooks (current release) ---------------------------------------------------------------


def test_workbooks_give_each_image_its_collection_and_age(tmp_path: Path) -> None:
    archive = tmp_path / "current.zip"
    archive.write_bytes(current_zip_with_workbooks(10, standard_workbooks(10)))
    result = download_dataset(from_zip=archive)
    rows = _by_name(result.dataset.rows())
    assert (rows["COVID-1"].collection, rows["COVID-1"].age_group) == ("bimcv", "adult")
    assert rows["COVID-9"].collection == "sirm"
    assert (rows["Normal-2"].collection, rows["Normal-2"].age_group) == ("rsna", "adult")
    assert (rows["Normal-7"].collection, rows["Normal-7"].age_group) == ("kermany", "child")
    assert {r.collection for n, r in rows.items() if n.startswith("Viral")} == {"kermany"}
    assert result.provenance.basis == {prov.BASIS_WORKBOOK: 30}
    assert result.provenance.warnings == []
    assert sorted(result.provenance.workbooks) == [
        f"{ROOT}/COVID.metadata.xlsx",
        f"{ROOT}/Normal.metadata.xlsx",
        f"{ROOT}/Viral Pneumonia.metadata.xlsx",
    ]
    info = result.dataset.info()
    assert info["manifest_format"] == 2
    assert info["provenance"]["basis"] == {"workbook": 30}
    summary = confounding.summarize(result.dataset.rows())
    assert summary.collections["normal"] == {"kermany": 5, "rsna": 5}
    # COVID-19 shares no collection with either other class; by age, Normal's adults
    # (5 of 10) overlap the COVID-19 adults, so only COVID-19 vs Pneumonia is age-confounded.
    joined = "\n".join(summary.confounding)
    assert "COVID-19 and normal share no collection" in joined
    assert "COVID-19 and viral pneumonia share no collection" in joined
    assert "COVID-19 and viral pneumonia share no age group" in joined
    assert "normal and viral pneumonia" not in joined
    assert "COVID-19 and normal share no age group" not in joined
    assert len(summary.confounding) == 3


def test_workbook_problems_are_warnings_and_their_images_unknown(tmp_path: Path) -> None:
    books = standard_workbooks(6)
    books["COVID.metadata.xlsx"] = b"PK not really a workbook"
    books["Normal.metadata.xlsx"] = workbook_bytes(
        [("Normal-1", RSNA_URL), ("Normal-99", RSNA_URL), ("Normal-2", "https://x.org/y")]
    )
    del books["Viral Pneumonia.metadata.xlsx"]
    archive = tmp_path / "current.zip"
    archive.write_bytes(current_zip_with_workbooks(6, books))
    result = download_dataset(from_zip=archive)
    rows = _by_name(result.dataset.rows())
    assert rows["COVID-1"].collection == "unknown"  # corrupt workbook
    assert rows["Viral Pneumonia-1"].collection == "unknown"  # no workbook
    assert rows["Normal-1"].collection == "rsna"
    assert rows["Normal-3"].collection == "unknown"  # not listed
    warnings = "\n".join(result.provenance.warnings)
    assert "COVID.metadata.xlsx: not a readable workbook" in warnings
    assert "Normal.metadata.xlsx lists 1 file(s) that are not among the images" in warnings
    assert "Normal-99" in warnings
    assert "1 URL(s) name no known collection" in warnings
    assert "no workbook for class viral pneumonia" in warnings and "its 6 image(s)" in warnings
    assert "no workbook for class COVID-19" not in warnings  # corrupt: its own warning
    assert result.provenance.basis == {"workbook": 2, "unknown": 16}


def test_a_workbook_without_the_columns_is_reported(tmp_path: Path) -> None:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["NAME", "LINK"])
    path = tmp_path / "COVID.metadata.xlsx"
    book.save(path)
    with pytest.raises(DataError, match="no 'FILE NAME' and 'URL' columns"):
        prov.read_workbook(path)


@pytest.mark.parametrize(
    "content",
    [b"", b"PK\x03\x04 truncated", None],
    ids=["empty", "truncated-zip", "broken-xml"],
)
def test_a_damaged_workbook_is_one_line(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "COVID.metadata.xlsx"
    if content is None:  # a real zip whose sheet XML is garbage
        buffer = io.BytesIO()
        original = io.BytesIO(workbook_bytes([("COVID-1", SIRM_URL)]))
        with zipfile.ZipFile(original) as good, zipfile.ZipFile(buffer, "w") as bad:
            for item in good.infolist():
                data = good.read(item)
                bad.writestr(item, b"<not xml" if "worksheets/" in item.filename else data)
        content = buffer.getvalue()
    path.write_bytes(content)
    with pytest.raises(DataError, match=r"COVID.metadata.xlsx: not a readable workbook"):
        prov.read_workbook(path)


def test_from_dir_reads_the_workbooks_beside_the_class_folders(tmp_path: Path) -> None:
    root = tmp_path / "release"
    write_class_folders(
        root,
        8,
        24,
        folder_names={"covid": "COVID", "normal": "Normal", "viral_pneumonia": "Viral Pneumonia"},
    )
    (root / "Normal.metadata.xlsx").write_bytes(
        workbook_bytes([(f"NORMAL-{i}", RSNA_URL) for i in range(1, 9)])
    )
    result = download_dataset(from_dir=root)
    rows = result.dataset.rows()
    assert {r.collection for r in rows if r.label == "normal"} == {"rsna"}
    assert {r.collection for r in rows if r.label != "normal"} == {"unknown"}


# --- the first release's documented composition ----------------------------------------------


def test_first_release_gets_its_documented_composition(tmp_path: Path) -> None:
    archive = tmp_path / "first.zip"
    archive.write_bytes(layout_zip("first", 8))  # its workbook is a fake: a warning
    result = download_dataset(from_zip=archive)
    table = confounding.collection_counts(result.dataset.rows())
    assert table == {
        "covid": {"kaggle-covid": 8},
        "normal": {"kermany": 8},
        "viral_pneumonia": {"kermany": 8},
    }
    ages = confounding.age_group_counts(result.dataset.rows())
    assert ages["covid"] == {"adult": 8} and ages["normal"] == {"child": 8}
    assert result.provenance.basis == {prov.BASIS_RELEASE: 24}
    assert any("not a readable workbook" in w for w in result.provenance.warnings)


def test_other_layouts_without_sources_are_unknown_and_not_confounded(tmp_path: Path) -> None:
    archive = tmp_path / "intermediate.zip"
    archive.write_bytes(layout_zip("intermediate", 8))
    result = download_dataset(from_zip=archive)
    assert {r.collection for r in result.dataset.rows()} == {"unknown"}
    assert confounding.confounding_warnings(result.dataset.rows()) == []


# --- a sources CSV ----------------------------------------------------------------------------


def _write_sources(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _folder_with_sources(tmp_path: Path) -> tuple[Path, Path]:
    root = write_class_folders(tmp_path / "mine", 6, 24)
    lines = ["path,source,age_group"]
    for label in classes.STUDY_CLASSES:
        for i in range(1, 7):
            # Paths may carry the folder's own name (a prefix the dataset does not have).
            if label == "covid":
                lines.append(f"mine/{label}/{label}-{i}.png,hospital-a,adult")
            elif label == "normal":
                lines.append(f"{label}/{label}-{i}.png,{'hospital-a' if i <= 3 else 'kermany'},")
            else:
                lines.append(f"{label}/{label}-{i}.png,kermany,paediatric")
    lines.append("elsewhere/other-1.png,rsna,adult")  # names no image: a warning
    return root, _write_sources(tmp_path / "sources.csv", lines)


def test_download_with_sources_csv_records_and_warns(tmp_path: Path) -> None:
    root, sources = _folder_with_sources(tmp_path)
    result = runner.invoke(
        app, ["download", "--from-dir", str(root), "--sources", str(sources), "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    provenance = data["provenance"]
    assert provenance["collections"] == {
        "covid": {"hospital-a": 6},
        "normal": {"hospital-a": 3, "kermany": 3},
        "viral_pneumonia": {"kermany": 6},
    }
    # No age given for normals: the collection's documented population (kermany: child).
    assert provenance["age_groups"]["normal"] == {"unknown": 3, "child": 3}
    assert provenance["basis"] == {"sources-csv": 18}
    assert any("1 of 19 path(s) name no image" in w for w in provenance["warnings"])
    # COVID-19 vs Pneumonia share nothing; COVID-19 vs Healthy share hospital-a (100 % / 50 %)
    # but not an age group: the Healthy images whose age is known are all children.
    joined = "\n".join(provenance["confounding"])
    assert "COVID-19 and viral pneumonia share no collection" in joined
    assert "COVID-19 and normal share no collection" not in joined
    assert "COVID-19 and normal share no age group" in joined
    assert "normal and viral pneumonia" not in joined


def test_download_summary_shows_the_table_and_the_warning_in_words(tmp_path: Path) -> None:
    root, sources = _folder_with_sources(tmp_path)
    result = runner.invoke(app, ["download", "--from-dir", str(root), "--sources", str(sources)])
    assert result.exit_code == 0, result.output
    assert "Where the images come from" in result.output
    assert "hospital-a" in result.output and "age: child" in result.output
    assert "Confounded:" in result.output
    assert "rather than by disease" in result.output


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["file,origin", "a.png,rsna"], "expected a header 'path,source[,age_group]'"),
        (["path,source,age_group", "covid/covid-1.png,rsna,elderly"], "line 2: age_group"),
        (["path,source", "covid/covid-1.png,two words"], "line 2: source 'two words'"),
        (["path,source"], "no rows"),
        (["path,source", "nowhere/x.png,rsna"], "none of its 1 paths names an image"),
    ],
)
def test_a_bad_sources_file_is_one_line_and_leaves_nothing(
    tmp_path: Path, cxr_home: Path, lines: list[str], message: str
) -> None:
    root = write_class_folders(tmp_path / "mine", 8, 24)
    sources = _write_sources(tmp_path / "sources.csv", lines)
    result = runner.invoke(app, ["download", "--from-dir", str(root), "--sources", str(sources)])
    assert result.exit_code == EXIT_DATA, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    datasets = cxr_home / "datasets"
    assert not datasets.exists() or list(datasets.iterdir()) == []


def test_a_missing_sources_file_fails_before_any_work(tmp_path: Path) -> None:
    root = write_class_folders(tmp_path / "mine", 3, 24)
    result = runner.invoke(
        app, ["download", "--from-dir", str(root), "--sources", str(tmp_path / "no.csv")]
    )
    assert result.exit_code == EXIT_DATA
    assert "sources file not found" in result.output


# --- attaching sources to an existing dataset -------------------------------------------------


def test_sources_attach_to_an_existing_dataset_keeping_split_and_hashes(tmp_path: Path) -> None:
    root, sources = _folder_with_sources(tmp_path)
    # The sources.csv beside the folder would be found and used: leave it out on purpose.
    download_dataset(from_dir=root, name="mine", find_sources=False)
    augment_dataset(resolve_dataset("mine"), factor=2, seed=0)
    dataset = resolve_dataset("mine")
    before = dataset.rows()
    info_before = dataset.info()
    assert {r.collection for r in before} == {"unknown"}
    result = runner.invoke(
        app, ["download", "--sources", str(sources), "--dataset", "mine", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert_documented("download-sources", json.loads(result.stdout))
    after = dataset.rows()
    assert [(r.path, r.sha256, r.split, r.label) for r in after] == [
        (r.path, r.sha256, r.split, r.label) for r in before
    ]
    assert split_hash(after) == split_hash(before) == info_before["split_sha256"]
    assert manifest_hash(after) == manifest_hash(before)
    covid = [r for r in after if r.label == "covid"]
    assert {r.collection for r in covid} == {"hospital-a"}
    # Augmented copies come from where their originals come from.
    augmented = [r for r in after if r.origin == "augmented"]
    assert augmented and {r.collection for r in augmented} == {"hospital-a"}
    assert dataset.info()["manifest_format"] == 2
    assert dataset.info()["provenance"]["sources_file"] == str(sources)
    data = json.loads(result.stdout)
    assert data["provenance"]["collections"]["viral_pneumonia"] == {"kermany": 6}


def test_attach_keeps_what_the_file_does_not_mention(tmp_path: Path) -> None:
    root, sources = _folder_with_sources(tmp_path)
    download_dataset(from_dir=root, name="mine", sources=sources)
    partial = _write_sources(tmp_path / "partial.csv", ["path,source", "covid/covid-1.png,bimcv"])
    result = prov.attach_sources(resolve_dataset("mine"), partial)
    rows = _by_name(result.dataset.rows())
    assert rows["covid-1"].collection == "bimcv"
    assert rows["covid-2"].collection == "hospital-a"  # kept
    assert result.report.basis == {"sources-csv": 1, "unchanged": 17}


def test_attach_with_a_wrong_file_changes_nothing(tmp_path: Path) -> None:
    root, _sources = _folder_with_sources(tmp_path)
    dataset = download_dataset(from_dir=root, name="mine").dataset
    manifest = dataset.manifest_path.read_bytes()
    wrong = _write_sources(tmp_path / "wrong.csv", ["path,source", "other/x.png,rsna"])
    result = runner.invoke(app, ["download", "--sources", str(wrong), "--dataset", "mine"])
    assert result.exit_code == EXIT_DATA
    assert "none of its 1 paths names an image" in result.output
    assert dataset.manifest_path.read_bytes() == manifest


def test_attach_needs_sources_and_no_download_options(tmp_path: Path) -> None:
    root, sources = _folder_with_sources(tmp_path)
    download_dataset(from_dir=root, name="mine")
    alone = runner.invoke(app, ["download", "--dataset", "mine"])
    assert alone.exit_code == EXIT_USAGE and "give --sources" in alone.output
    mixed = runner.invoke(
        app,
        ["download", "--dataset", "mine", "--sources", str(sources), "--from-dir", str(root)],
    )
    assert mixed.exit_code == EXIT_USAGE and "leave out" in mixed.output
    missing = runner.invoke(app, ["download", "--dataset", "nope", "--sources", str(sources)])
    assert missing.exit_code == EXIT_DATA and "no dataset named 'nope'" in missing.output


# --- the manifest's format ----------------------------------------------------------------------


def test_a_format_1_manifest_loads_as_unknown_with_its_old_hash(tmp_path: Path) -> None:
    old = tmp_path / "manifest.csv"
    text = (
        ",".join(REQUIRED_COLUMNS)
        + "\nimages/covid/a.png,covid,"
        + "ab" * 32
        + ",32,32,train,original,,\n"
    )
    old.write_text(text, encoding="utf-8")
    rows = read_manifest(old)
    assert (rows[0].collection, rows[0].age_group) == ("unknown", "unknown")
    import hashlib

    # The identity of a format-1 manifest is unchanged: models and caches still match.
    assert manifest_hash(rows) == hashlib.sha256(text.encode()).hexdigest()


# --- the confounding rule -----------------------------------------------------------------------


def _rows(spec: dict[str, dict[str, int]], ages: dict[str, str] | None = None) -> list[ManifestRow]:
    rows = []
    for label, by_collection in spec.items():
        for collection, n in by_collection.items():
            for i in range(n):
                rows.append(
                    ManifestRow(
                        path=f"images/{label}/{collection}-{i}.png",
                        label=label,
                        sha256=f"{label}{collection}{i}",
                        width=8,
                        height=8,
                        split="train",
                        collection=collection,
                        age_group=(ages or {}).get(collection, "unknown"),
                    )
                )
    return rows


def test_shared_collections_under_ten_percent_of_a_class_is_confounding() -> None:
    # 9 of 100 COVID-19 images from the collection it shares with Healthy: under 10 %.
    confounded = _rows({"covid": {"x": 91, "shared": 9}, "normal": {"shared": 50}})
    (warning,) = confounding.confounding_warnings(confounded)
    assert "share (shared) hold only 9 of 100 COVID-19 and 50 of 50 normal" in warning
    # 10 of 100 is not under 10 %.
    fine = _rows({"covid": {"x": 90, "shared": 10}, "normal": {"shared": 50}})
    assert confounding.confounding_warnings(fine) == []


def test_unknown_images_are_left_out_of_the_rule() -> None:
    rows = _rows({"covid": {"x": 10, "unknown": 90}, "normal": {"x": 5, "unknown": 5}})
    assert confounding.confounding_warnings(rows) == []
    only_unknown = _rows({"covid": {"unknown": 10}, "normal": {"kermany": 10}})
    assert confounding.confounding_warnings(only_unknown) == []


def test_age_groups_follow_the_same_rule() -> None:
    ages = {"a": "adult", "b": "adult", "k": "child"}
    rows = _rows({"covid": {"a": 10}, "normal": {"b": 10}, "viral_pneumonia": {"k": 10}}, ages)
    warnings = confounding.confounding_warnings(rows)
    assert sum("share no collection" in w for w in warnings) == 3
    age = [w for w in warnings if "age group" in w]
    assert len(age) == 2 and all("viral pneumonia" in w for w in age)
    assert all("the patient's age rather than by disease" in w for w in age)


def test_augmented_rows_do_not_count() -> None:
    rows = _rows({"covid": {"x": 1, "shared": 1}, "normal": {"shared": 10}})
    extra = [
        ManifestRow(
            path=f"augmented/c{i}.png",
            label="covid",
            sha256=str(i),
            width=8,
            height=8,
            split="train",
            origin="augmented",
            collection="x",
        )
        for i in range(50)
    ]
    assert confounding.confounding_warnings(rows + extra) == []  # 1 of 2 shared, 50 %


def test_reproduce_report_repeats_the_warning() -> None:
    from cxr_covid.reproduce.report import provenance_lines

    class Fake:
        def __init__(self, rows: list[ManifestRow]) -> None:
            self._rows = rows

        def rows(self) -> list[ManifestRow]:
            return self._rows

    confounded = Fake(_rows({"covid": {"a": 4}, "normal": {"k": 4}}))
    text = "\n".join(provenance_lines(confounded))
    assert "## Where the images come from" in text
    assert "**Warning:** COVID-19 and normal share no collection" in text
    unknown = "\n".join(provenance_lines(Fake(_rows({"covid": {"unknown": 2}}))))
    assert "download --sources FILE.csv --dataset NAME" in unknown


# --- the real development data ------------------------------------------------------------------


@pytest.fixture
def dev_sources() -> Path:
    path = SHARED_DATA / "cxr-dev" / "sources.csv"
    if not path.is_file():
        pytest.skip(f"development sources not available at {path}")
    return path


def test_real_dev_zip_with_its_sources_is_confounded(cxr_dev_zip: Path, dev_sources: Path) -> None:
    result = runner.invoke(
        app, ["download", "--from-zip", str(cxr_dev_zip), "--sources", str(dev_sources), "--json"]
    )
    assert result.exit_code == 0, result.output
    provenance = json.loads(result.stdout)["provenance"]
    assert provenance["collections"] == {
        "covid": {"kaggle-covid": 120},
        "normal": {"kermany": 120},
        "viral_pneumonia": {"kermany": 120},
    }
    assert provenance["age_groups"]["normal"] == {"child": 120}
    assert provenance["age_groups"]["covid"] == {"adult": 120}
    joined = "\n".join(provenance["confounding"])
    assert "COVID-19 and normal share no collection" in joined
    assert "COVID-19 and viral pneumonia share no age group" in joined
    # The adult-normal rows of the same file name no image of the zip: a warning, not an error.
    assert any("120 of 480" in w for w in provenance["warnings"])
    with (SHARED_DATA / "cxr-dev" / "sources.csv").open() as handle:
        listed = sum(1 for row in csv.DictReader(handle) if row["path"].startswith(ROOT))
    assert provenance["basis"] == {"sources-csv": listed}


def test_real_adult_normals_attach_by_trailing_path(dev_sources: Path, tmp_path: Path) -> None:
    adults = SHARED_DATA / "cxr-dev" / "adult-normal" / "normal"
    covid = SHARED_DATA / "cxr-sample" / "covid"
    if not adults.is_dir() or not covid.is_dir():
        pytest.skip(f"adult normals or sample images not available under {SHARED_DATA}")
    # A dataset needs two classes: the adult normals beside 8 COVID-19 films that
    # sources.csv does not list (they must read `unknown`, not be guessed).
    folder = tmp_path / "adults"
    shutil.copytree(adults, folder / "normal")
    shutil.copytree(covid, folder / "covid", ignore=shutil.ignore_patterns("*.csv"))
    download_dataset(from_dir=folder, name="adults", classes=["covid", "normal"])
    result = prov.attach_sources(resolve_dataset("adults"), dev_sources)
    assert result.summary.collections == {"covid": {"unknown": 8}, "normal": {"rsna": 120}}
    assert result.summary.age_groups == {"covid": {"unknown": 8}, "normal": {"adult": 120}}
    assert result.report.basis == {"sources-csv": 120, "unchanged": 8}


def test_eval_caveats_say_what_an_accuracy_may_measure() -> None:
    # Confounded: every warning is passed on, prefixed for the eval table.
    confounded = _rows({"covid": {"a": 10}, "normal": {"k": 10}}, {"a": "adult", "k": "child"})
    caveats = confounding.accuracy_caveats(confounded, "dev")
    assert len(caveats) == 2 and all(
        c.startswith("what this accuracy may measure:") for c in caveats
    )
    # Nothing recorded: say that nobody can tell, and how to find out.
    unknown = _rows({"covid": {"unknown": 5}, "normal": {"unknown": 5}})
    (caveat,) = confounding.accuracy_caveats(unknown, "dev")
    assert "is not recorded" in caveat and "--sources FILE.csv --dataset dev" in caveat
    # Sources recorded and shared enough: nothing to say.
    mixed = _rows({"covid": {"a": 5, "k": 5}, "normal": {"a": 5, "k": 5}})
    assert confounding.accuracy_caveats(mixed, "dev") == []


def test_eval_on_a_confounded_dataset_warns_beside_its_table(
    dev_sources: Path, cxr_home: Path
) -> None:
    zip_path = SHARED_DATA / "cxr-dev" / "covid19-radiography-dev.zip"
    if not zip_path.is_file():
        pytest.skip(f"development archive not available at {zip_path}")
    from typer.testing import CliRunner

    from cxr_covid.cli import app

    runner = CliRunner()
    args = ["download", "--from-zip", str(zip_path), "--sources", str(dev_sources), "--name", "dev"]
    assert runner.invoke(app, args).exit_code == 0
    trained = runner.invoke(
        app, ["train", "-d", "dev", "-e", "1", "--image-size", "16", "--no-calibrate"]
    )
    assert trained.exit_code == 0, trained.output
    result = runner.invoke(app, ["eval", "--no-save", "--bootstrap", "0"])
    assert result.exit_code == 0, result.output
    assert "what this accuracy may measure: COVID-19 and normal share no collection" in (
        result.stderr
    )


def _row(label: str, collection: str, age: str = "unknown", split: str = "train") -> ManifestRow:
    return ManifestRow(f"{label}/{collection}-{age}", label, "0" * 64, 8, 8, split, "original",
                       collection=collection, age_group=age)  # fmt: skip


def test_origin_only_rule_calls_each_image_by_where_it_comes_from() -> None:
    # The study's mix with adult normals: COVID-19 adults from one collection, normals from
    # Kermany (children) and RSNA (adults), pneumonia Kermany children.
    train = (
        [_row("covid", "kaggle-covid", "adult")] * 5
        + [_row("normal", "kermany", "child")] * 4
        + [_row("normal", "rsna", "adult")] * 3
        + [_row("viral_pneumonia", "kermany", "child")] * 3
    )
    test = [
        _row("covid", "kaggle-covid", "adult", "test"),
        _row("normal", "rsna", "adult", "test"),
        _row("viral_pneumonia", "kermany", "child", "test"),  # Kermany children: mostly normal
        _row("covid", "hannover", "adult", "test"),  # unseen collection: by age group
        _row("normal", "kermany", "unknown", "test"),  # unknown age: by collection
        _row("covid", "unknown", "unknown", "test"),  # nothing known: the largest class
    ]
    calls = confounding.origin_only_predictions(train, test)
    assert calls == ["covid", "normal", "normal", "covid", "normal", "normal"]


def test_origin_only_rule_breaks_ties_in_the_study_order_and_needs_recorded_origins() -> None:
    tied = [_row("viral_pneumonia", "kermany", "child"), _row("normal", "kermany", "child")]
    assert confounding.origin_only_predictions(
        tied, [_row("normal", "kermany", "child", "test")]
    ) == ["normal"]
    unknown = [_row("covid", "unknown"), _row("normal", "unknown")]
    assert (
        confounding.origin_only_predictions(unknown, [_row("covid", "unknown", split="test")])
        is None
    )
