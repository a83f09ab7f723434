"""predict_paths / load_batches: same numbers as a direct model call, ordered, lazy."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxr_covid.data.images import Preprocessing, load_for_model
from cxr_covid.errors import DependencyError
from cxr_covid.inference import batches as inference
from cxr_covid.inference.batches import load_batches, predict_paths
from cxr_covid.models import store
from tests.predict.conftest import BAD, block_pydicom


def _write_pngs(folder: Path, count: int, size: int = 30) -> list[Path]:
    rng = np.random.default_rng(7)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"img-{i}.png"
        Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


@pytest.mark.parametrize("batch_size", [1, 3, 32])
def test_probabilities_equal_a_direct_model_call(
    tiny_model: Path, odd_images: dict[str, Path], batch_size: int
) -> None:
    stored = store.StoredModel(tiny_model)
    model = stored.load()
    prep = stored.record().prep
    paths = list(odd_images.values())
    results = list(predict_paths(model, paths, prep, batch_size=batch_size))
    assert [r.index for r in results] == list(range(len(paths)))
    assert [r.path for r in results] == paths
    for result in results:
        name = next(k for k, v in odd_images.items() if v == result.path)
        if name in BAD:
            assert result.probabilities is None
            assert result.error and str(result.path) in result.error
            continue
        assert result.error is None and result.probabilities is not None
        pixels = load_for_model(result.path, prep)[None].astype(np.float32)
        direct = np.asarray(model(pixels, training=False))[0]
        np.testing.assert_allclose(result.probabilities, direct, atol=1e-6)
        assert abs(float(result.probabilities.sum()) - 1) < 1e-5


def test_a_bad_file_costs_only_its_own_row(tiny_model: Path, tmp_path: Path) -> None:
    paths = _write_pngs(tmp_path, 5)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    paths.insert(2, broken)
    model = store.StoredModel(tiny_model).load()
    results = list(predict_paths(model, paths, Preprocessing(image_size=24), batch_size=4))
    assert [r.error is None for r in results] == [True, True, False, True, True, True]


def test_load_batches_decodes_only_a_bounded_number_ahead(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Memory stays flat for 100,000 inputs: decoding never runs more than
    (prefetch + 1) batches ahead of the consumer, however long the list."""
    decoded = 0
    lock = threading.Lock()

    def fake_load(path: Path, prep: Preprocessing) -> np.ndarray:
        nonlocal decoded
        with lock:
            decoded += 1
        return np.zeros((prep.image_size, prep.image_size, 3), np.uint8)

    monkeypatch.setattr(inference, "load_for_model", fake_load)
    paths = [Path(f"/nowhere/{i}.png") for i in range(100_000)]
    batch, prefetch = 50, 2
    consumed = 0
    worst_ahead = 0
    batches = load_batches(paths, Preprocessing(image_size=16), batch, 2, prefetch)
    for i, got in enumerate(batches):
        consumed += len(got.indices)
        with lock:
            worst_ahead = max(worst_ahead, decoded - consumed)
        if i == 40:
            break
    batches.close()  # the consumer stops early: queued decodes are dropped
    with lock:
        after_close = decoded
    assert worst_ahead <= (prefetch + 1) * batch
    assert consumed == 41 * batch
    assert after_close <= consumed + (prefetch + 1) * batch
    assert after_close < len(paths) // 10


def test_load_batches_keeps_order_and_reports_errors(tmp_path: Path) -> None:
    paths = _write_pngs(tmp_path, 7)
    paths[4] = tmp_path / "missing.png"
    batches = list(load_batches(paths, Preprocessing(image_size=8), batch_size=3))
    assert [b.indices for b in batches] == [[0, 1, 2], [3, 5], [6]]
    assert batches[1].errors[0][0] == 4 and "cannot read file" in batches[1].errors[0][1]
    assert batches[1].pixels.shape == (2, 8, 8, 3)


def test_missing_dicom_extra_stops_the_run(
    tiny_model: Path, odd_images: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    block_pydicom(monkeypatch)
    model = store.StoredModel(tiny_model).load()
    with pytest.raises(DependencyError):
        list(predict_paths(model, [odd_images["mono2"]], Preprocessing(image_size=24)))
