"""The audit's source probe: the collection read back from the penultimate features."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cxr_covid import classes, models
from cxr_covid.audit import source_probe
from cxr_covid.audit.run import AuditOptions, run_audit
from tests.audit.test_audit import build, train

SIZE = 32


def _films(n: int, bright_corner: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (n, SIZE, SIZE, 3)).astype(np.uint8)
    pixels[bright_corner, :8, :8, :] = 255
    return pixels


def _probe_on(pixels: np.ndarray, labels: list[str], collections: list[str]) -> object:
    import keras

    keras.utils.set_random_seed(0)
    model = models.build("baseline", SIZE, 3)  # untrained: its features are a random projection
    features = source_probe.penultimate(model, pixels, batch_size=16)
    assert features.shape == (len(pixels), 64)
    return source_probe.probe(features, labels, collections, seed=1)


def test_the_probe_is_at_chance_when_the_collection_is_independent_of_the_pixels() -> None:
    n = 80
    rng = np.random.default_rng(5)
    collections = list(rng.choice(["kermany", "rsna"], n))
    labels = [classes.NORMAL] * n
    result = _probe_on(_films(n, np.zeros(n, bool), seed=2), labels, collections)
    assert isinstance(result, source_probe.SourceProbeResult) and result.skipped is None
    (normal,) = result.per_class
    assert normal.chance == 0.5 and not normal.above_chance
    assert normal.balanced_accuracy.low <= 0.5 <= normal.balanced_accuracy.high
    assert abs(normal.balanced_accuracy.value - 0.5) < 0.15


def test_the_probe_finds_a_collection_written_into_the_pixels() -> None:
    n = 80
    collections = ["kermany" if i % 2 else "rsna" for i in range(n)]
    corner = np.array([c == "rsna" for c in collections])
    # Two classes: the probe works within each; covid has one collection and is not probed.
    labels = [classes.NORMAL] * n + [classes.COVID] * 10
    pixels = np.concatenate([_films(n, corner, seed=3), _films(10, np.zeros(10, bool), seed=4)])
    result = _probe_on(pixels, labels, collections + ["kaggle-covid"] * 10)
    assert isinstance(result, source_probe.SourceProbeResult)
    (normal,) = result.per_class
    assert normal.label == classes.NORMAL and normal.collections == {"kermany": 40, "rsna": 40}
    assert normal.above_chance and normal.balanced_accuracy.value > 0.9
    assert result.overall is not None and result.overall.low > 0.5
    assert result.overall_chance == 0.5


def test_the_probe_says_why_it_was_skipped() -> None:
    features = np.zeros((6, 4))
    nothing = source_probe.probe(features, ["normal"] * 6, ["unknown"] * 6)
    assert nothing.per_class == [] and "records no collection" in (nothing.skipped or "")
    single = source_probe.probe(features, ["normal"] * 3 + ["covid"] * 3, ["a"] * 3 + ["b"] * 3)
    assert "two or more recorded collections" in (single.skipped or "")
    few = source_probe.probe(features, ["normal"] * 6, ["a"] * 5 + ["b"])
    assert few.skipped and few.notes and "fewer than" in few.notes[0]


def test_the_audit_reports_the_probe_in_its_json_and_markdown(cxr_home: Path) -> None:
    origins = {classes.COVID: ("kaggle-covid", "adult"), classes.NORMAL: ("kermany", "child")}
    dataset = build(cxr_home, "probed", shortcut=True, per_class=40, origins=origins)
    # Two collections among the normals, alternating, so each split holds both.
    rows = dataset.rows()
    from dataclasses import replace

    normal = [i for i, r in enumerate(rows) if r.label == classes.NORMAL]
    for k, i in enumerate(normal):
        rows[i] = replace(rows[i], collection="rsna" if k % 2 else "kermany")
    dataset.write_rows(rows)
    model_id = train("probed", epochs=1)
    result = run_audit(AuditOptions(model=model_id, control=False, attention=False))
    assert result.source_probe is not None and result.source_probe.skipped is None
    assert [p.label for p in result.source_probe.per_class] == [classes.NORMAL]
    saved = json.loads((result.folder / "audit.json").read_text())
    assert saved["source_probe"]["per_class"][0]["collections"] == {"kermany": 4, "rsna": 4}
    assert "## Source probe" in (result.folder / "report.md").read_text()
    skipped = run_audit(
        AuditOptions(model=model_id, control=False, attention=False, source_probe=False)
    )
    assert skipped.source_probe is None


def test_an_audit_without_collections_says_the_probe_was_skipped(cxr_home: Path) -> None:
    build(cxr_home, "plain", shortcut=True, per_class=10)
    model_id = train("plain", epochs=1)
    result = run_audit(AuditOptions(model=model_id, control=False, attention=False))
    assert result.source_probe is not None
    assert "records no collection" in (result.source_probe.skipped or "")
    assert "Skipped: the dataset records no collection" in (result.folder / "report.md").read_text()
