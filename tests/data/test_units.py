"""Units of the data pipeline: extraction checks, class mapping, split protocol, sources."""

from __future__ import annotations

import io
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from cxr_covid.classes import parse_class_map
from cxr_covid.data import dedupe as dd
from cxr_covid.data.catalog import class_of, natural_key, patient_id
from cxr_covid.data.extract import Limits, member_problem, safe_extract
from cxr_covid.data.sources import Source, find_credentials, kaggle_url
from cxr_covid.data.splits import assign_splits, parse_fractions
from cxr_covid.errors import ArchiveError, DataError, UsageError
from tests.data.zips import CHAR_DEVICE, SYMLINK, special_member


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("a/b.png", None),
        ("../evil", "'..'"),
        ("a/../../evil", "'..'"),
        ("/etc/passwd", "absolute"),
        ("C:/evil", "absolute"),
        ("\\\\server\\evil", "absolute"),
    ],
)
def test_member_names(name: str, problem: str | None) -> None:
    found = member_problem(zipfile.ZipInfo(name))
    assert (found is None) if problem is None else (problem in (found or ""))


def test_symlink_and_device_members() -> None:
    assert member_problem(special_member("x", SYMLINK)) == "a symbolic link"
    assert member_problem(special_member("x", CHAR_DEVICE)) == "a device, FIFO or socket"


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_bounds_on_size_members_and_ratio(tmp_path: Path) -> None:
    path = tmp_path / "a.zip"
    path.write_bytes(_zip({"a.bin": b"\0" * 300_000, "b.txt": b"hello"}))
    assert len(safe_extract(path, tmp_path / "ok")) == 2
    with pytest.raises(ArchiveError, match="unpack to"):
        safe_extract(path, tmp_path / "x", limits=Limits(max_bytes=100_000))
    with pytest.raises(ArchiveError, match="2 members"):
        safe_extract(path, tmp_path / "y", limits=Limits(max_members=1))
    with pytest.raises(ArchiveError, match="zip bomb"):
        safe_extract(path, tmp_path / "z", limits=Limits(suspicious_size=1000))
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())


def test_member_lying_about_its_size_is_caught(tmp_path: Path) -> None:
    data = bytearray(_zip({"a.bin": b"\1" * 50_000}))
    # Patch the central directory's uncompressed size (at offset 24 of the entry) down to 10.
    cd = data.rfind(b"PK\x01\x02")
    data[cd + 24 : cd + 28] = (10).to_bytes(4, "little")
    path = tmp_path / "liar.zip"
    path.write_bytes(bytes(data))
    with pytest.raises(ArchiveError):
        safe_extract(path, tmp_path / "out")


def test_keep_filter_skips_members(tmp_path: Path) -> None:
    path = tmp_path / "a.zip"
    path.write_bytes(_zip({"C/images/a.png": b"1", "C/masks/a.png": b"2"}))
    written = safe_extract(path, tmp_path / "o", keep=lambda n: "/masks/" not in n)
    assert [p.relative_to(tmp_path / "o").as_posix() for p in written] == ["C/images/a.png"]


@pytest.mark.parametrize(
    ("path", "label"),
    [
        ("COVID-19 Radiography Database/COVID-19/COVID-19 (1).png", "covid"),
        ("COVID-19 Radiography Database/NORMAL/NORMAL (3).png", "normal"),
        (
            "COVID-19 Radiography Database/Viral Pneumonia/Viral Pneumonia (2).png",
            "viral_pneumonia",
        ),
        ("COVID-19 Radiography Database/COVID/COVID (10).png", "covid"),
        ("COVID-19_Radiography_Dataset/COVID/images/COVID-1.png", "covid"),
        ("COVID-19_Radiography_Dataset/Lung_Opacity/images/Lung_Opacity-1.png", "lung_opacity"),
        ("COVID-19_Radiography_Dataset/COVID/masks/COVID-1.png", None),
        ("COVID-19_Radiography_Dataset/x.png", None),
        ("data/train/PNEUMONIA/person1_virus_6.jpeg", "viral_pneumonia"),
    ],
)
def test_class_of_known_layouts(path: str, label: str | None) -> None:
    assert class_of(path) == label


def test_class_map_overrides_and_validates() -> None:
    mapping = parse_class_map("Positive=covid, Neg = Healthy")
    assert mapping == {"Positive": "covid", "Neg": "normal"}
    assert class_of("x/positive/a.png", mapping) == "covid"
    with pytest.raises(UsageError):
        parse_class_map("a=flu")
    with pytest.raises(UsageError):
        parse_class_map("nothing")


def test_class_map_skip_and_repeated_options() -> None:
    mapping = parse_class_map(["Positive=covid", "Lung_Opacity=skip,Neg=normal"])
    assert mapping == {"Positive": "covid", "Lung_Opacity": "skip", "Neg": "normal"}
    assert class_of("x/Lung_Opacity/a.png", mapping) is None
    assert class_of("x/COVID/a.png", mapping) == "covid"


def test_patient_ids_and_natural_order() -> None:
    assert patient_id("person1608_virus_2786.jpeg") == "person1608"
    assert patient_id("patient00012_study1_view1_frontal.jpg") == "patient00012"
    assert patient_id("00000013_005.png") == "00000013"
    assert patient_id("COVID-19 (1).png") == ""
    names = ["COVID (10).png", "COVID (2).png", "COVID (1).png"]
    assert sorted(names, key=natural_key) == ["COVID (1).png", "COVID (2).png", "COVID (10).png"]


def test_split_follows_the_studys_sklearn_protocol() -> None:
    from sklearn.model_selection import train_test_split

    labels = ["covid"] * 40 + ["normal"] * 90 + ["viral_pneumonia"] * 70
    ours = assign_splits(labels)
    index = np.arange(len(labels))
    train, rest = train_test_split(index, test_size=0.3, stratify=labels, random_state=42)
    val, test = train_test_split(
        rest, test_size=0.5, stratify=[labels[i] for i in rest], random_state=42
    )
    expected = [""] * len(labels)
    for name, ids in (("train", train), ("val", val), ("test", test)):
        for i in ids:
            expected[i] = name
    assert ours == expected


def test_split_is_stratified() -> None:
    labels = ["covid"] * 219 + ["normal"] * 1341 + ["viral_pneumonia"] * 1345
    splits = assign_splits(labels)
    table = Counter(zip(splits, labels, strict=True))
    for label, n in Counter(labels).items():
        assert abs(table["train", label] - 0.7 * n) <= 1
        assert abs(table["val", label] - 0.15 * n) <= 1
        assert abs(table["test", label] - 0.15 * n) <= 1
    assert sum(v for (s, _), v in table.items() if s == "test") == 436


def test_split_groups_and_errors() -> None:
    labels = ["a"] * 30 + ["b"] * 30
    groups = [f"p{i // 3}" for i in range(60)]
    splits = assign_splits(labels, groups=groups)
    by_group: dict[str, set[str]] = {}
    for g, s in zip(groups, splits, strict=True):
        by_group.setdefault(g, set()).add(s)
    assert all(len(s) == 1 for s in by_group.values())
    with pytest.raises(DataError, match="only"):
        assign_splits(["a", "a", "a", "b"])
    assert set(assign_splits(["a"] * 10 + ["b"] * 10, fractions=(0.8, 0.0, 0.2))) == {
        "train",
        "test",
    }


@pytest.mark.parametrize("text", ["0.75,0.15,0.15", "0.7,0.3", "a,b,c", "0,0.5,0.5"])
def test_bad_fractions(text: str) -> None:
    with pytest.raises(UsageError):
        parse_fractions(text)


def test_fractions_as_percentages() -> None:
    assert parse_fractions("70,15,15") == pytest.approx((0.7, 0.15, 0.15))


def test_kaggle_url_and_default_names(monkeypatch: pytest.MonkeyPatch) -> None:
    assert kaggle_url() == (
        "https://www.kaggle.com/api/v1/datasets/download/"
        "tawsifurrahman/covid19-radiography-database"
    )
    assert kaggle_url(1).endswith("?datasetVersionNumber=1")
    monkeypatch.setenv("CXR_COVID_KAGGLE_URL", "http://mirror/x?token=1")
    assert kaggle_url(2) == "http://mirror/x?token=1&datasetVersionNumber=2"
    assert Source("url", "https://h/p/Archive%20v2.zip").default_name == "Archive-20v2"
    assert Source("zip", "/a/covid19-radiography-dev.zip").default_name == "covid19-radiography-dev"
    assert Source("dir", "/a/my data").default_name == "my-data"
    assert Source("url", "https://u:pw@h:8080/a.zip").describe()["url"] == "https://h:8080/a.zip"


def test_credentials_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert find_credentials() is None
    config = tmp_path / "kaggle-config"
    config.mkdir()
    (config / "kaggle.json").write_text('{"username": "u", "key": "SECRET-KEY-123"}')
    found = find_credentials()
    assert found is not None and found.kind == "basic" and found.origin.endswith("kaggle.json")
    assert found.secret == "SECRET-KEY-123" and "SECRET" not in repr(found)
    monkeypatch.setenv("KAGGLE_USERNAME", "env-user")
    monkeypatch.setenv("KAGGLE_KEY", "env-key")
    found = find_credentials()
    assert found is not None and found.username == "env-user"
    monkeypatch.setenv("KAGGLE_API_TOKEN", "tok")
    found = find_credentials()
    assert found is not None and found.kind == "bearer" and "tok" not in repr(found)


def test_dhash_clusters_and_drop_policy() -> None:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, size=(32, 32, 3), dtype=np.uint8) for _ in range(4)]
    hashes = [dd.dhash(img) for img in images] + [dd.dhash(images[0])]
    pairs = dd.near_pairs(hashes, max_distance=0, block=2)
    assert [(p.a, p.b, p.distance) for p in pairs] == [(0, 4, 0)]
    groups = dd.clusters(5, pairs)
    assert groups == [[0, 4]]
    assert dd.to_drop(groups, ["a", "b", "c", "d", "a"]) == {4}
    assert dd.to_drop(groups, ["a", "b", "c", "d", "b"]) == {0, 4}


def test_near_pairs_without_numpy_popcount(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(5)
    hashes = [rng.bytes(32) for _ in range(150)]
    hashes[7] = hashes[120]
    flipped = bytearray(hashes[3])
    flipped[0] ^= 0b111
    hashes[99] = bytes(flipped)
    fast = dd.near_pairs(hashes, max_distance=5, block=16)
    monkeypatch.delattr(np, "bitwise_count", raising=False)
    slow = dd.near_pairs(hashes, max_distance=5, block=16)
    assert fast == slow
    assert [(p.a, p.b, p.distance) for p in fast] == [(3, 99, 3), (7, 120, 0)]


def test_file_and_folder_of_the_same_name_is_an_archive_error(tmp_path: Path) -> None:
    path = tmp_path / "clash.zip"
    path.write_bytes(_zip({"a": b"file", "a/b.png": b"x"}))
    with pytest.raises(ArchiveError, match="cannot extract"):
        safe_extract(path, tmp_path / "out")
