"""The shared decode path on the files people actually have (issue 6's robustness list)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxr_covid.data.images import (
    RESIZE_METHODS,
    Preprocessing,
    load_for_model,
    read_image,
    resize,
)
from cxr_covid.errors import DependencyError, ImageError
from tests.predict.conftest import block_pydicom, gradient16, write_bomb_png, write_dicom

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("truncated", "corrupt or truncated"),
        ("empty", "empty file"),
        ("text", "not an image"),
        ("bomb", "too large"),
    ],
)
def test_unreadable_files_raise_a_one_line_image_error(
    odd_images: dict[str, Path], name: str, reason: str
) -> None:
    with pytest.raises(ImageError) as caught:
        read_image(odd_images[name])
    message = str(caught.value)
    assert reason in message
    assert str(odd_images[name]) in message
    assert "\n" not in message


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_decompression_bomb_is_refused_without_allocating_it(tmp_path: Path) -> None:
    """20000 x 20000 px would be 1.2 GB as RGB; the refusal must cost next to nothing."""
    bomb = write_bomb_png(tmp_path / "bomb.png")
    code = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from cxr_covid.data.images import read_image
        from cxr_covid.errors import ImageError
        try:
            read_image(Path({str(bomb)!r}))
        except ImageError as exc:
            print("refused:", exc)
        else:
            sys.exit("decoded a decompression bomb")
        # VmHWM is this process's own peak (ru_maxrss would include the forking parent's).
        status = Path("/proc/self/status").read_text()
        print("peak_kb", next(l.split()[1] for l in status.splitlines() if l.startswith("VmHWM")))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"},
        check=True,
    )
    assert "refused:" in done.stdout
    peak_mb = int(done.stdout.split("peak_kb")[1]) / 1024
    assert peak_mb < 300, f"peak memory {peak_mb:.0f} MB while refusing a bomb"


def test_header_claiming_a_huge_size_is_refused(tmp_path: Path) -> None:
    """A PNG whose header claims 20000 x 20000 but holds almost nothing."""
    real = write_bomb_png(tmp_path / "real.png", side=16).read_bytes()
    ihdr = real.index(b"IHDR")
    import struct
    import zlib

    fields = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + fields) & 0xFFFFFFFF)
    liar = real[: ihdr + 4] + fields + crc + real[ihdr + 4 + len(fields) + 4 :]
    (tmp_path / "liar.png").write_bytes(liar)
    with pytest.raises(ImageError, match="too large"):
        read_image(tmp_path / "liar.png")


def test_cmyk_jpeg_becomes_rgb(odd_images: dict[str, Path]) -> None:
    pixels = read_image(odd_images["cmyk"])
    assert pixels.shape == (30, 30, 3)
    red, green, blue = pixels.reshape(-1, 3).mean(axis=0)
    assert red > 200 and green < 60 and blue < 60  # CMYK (0, 255, 255, 0) is red


def test_16bit_grayscale_png_uses_its_full_range(odd_images: dict[str, Path]) -> None:
    with Image.open(odd_images["gray16"]) as img:
        assert img.mode.startswith("I")  # really 16-bit on disk
    pixels = read_image(odd_images["gray16"])
    row = pixels[0, :, 0].astype(int)
    assert row[0] == 0 and row[-1] == 255
    assert np.all(np.diff(row) >= 0)
    assert (pixels[..., 0] == pixels[..., 1]).all()


@pytest.mark.parametrize("bits", [10, 12, 16])
def test_16bit_png_with_fewer_significant_bits_is_not_black(tmp_path: Path, bits: int) -> None:
    """Medical exports often store raw 12-bit values in a 16-bit PNG: scale from 4095."""
    top = 2**bits - 1
    ramp = np.tile(np.linspace(0, top, 30).astype(np.uint16), (30, 1))
    Image.fromarray(ramp).save(tmp_path / "raw.png")
    row = read_image(tmp_path / "raw.png")[0, :, 0].astype(int)
    assert row[0] == 0 and row[-1] == 255
    assert abs(row[15] - round(255 * int(ramp[0, 15]) / top)) <= 1


def test_rgba_transparency_is_composited_on_black(odd_images: dict[str, Path]) -> None:
    pixels = read_image(odd_images["rgba"])
    assert pixels.shape == (30, 30, 3)
    assert (pixels[:, :15] == 0).all()
    assert (pixels[:, 15:] == 200).all()


def test_palette_png_is_read_as_its_grey_values(odd_images: dict[str, Path]) -> None:
    with Image.open(odd_images["palette"]) as img:
        assert img.mode == "P"
        expected = np.asarray(img.convert("L"))
    pixels = read_image(odd_images["palette"])
    assert (pixels[..., 0] == expected).all()


def test_exif_rotation_is_applied(odd_images: dict[str, Path]) -> None:
    pixels = read_image(odd_images["exif"])
    assert pixels.shape == (40, 20, 3)  # stored 40 wide x 20 tall, displayed rotated
    assert pixels[:15].mean() > 240  # the white half is on top once rotated
    assert pixels[25:].mean() < 15


def test_dicom_monochrome2_keeps_bright_values_bright(odd_images: dict[str, Path]) -> None:
    pixels = read_image(odd_images["mono2"])
    assert pixels.shape == (32, 32, 3)
    row = pixels[0, :, 0].astype(int)
    assert row[0] == 0 and row[-1] == 255
    assert np.all(np.diff(row) >= 0)


def test_dicom_monochrome1_is_inverted(odd_images: dict[str, Path]) -> None:
    """MONOCHROME1 stores the minimum as white: the same ramp must come out reversed."""
    mono1 = read_image(odd_images["mono1"])[0, :, 0].astype(int)
    mono2 = read_image(odd_images["mono2"])[0, :, 0].astype(int)
    assert mono1[0] == 255 and mono1[-1] == 0
    assert np.all(np.abs(mono1 + mono2 - 255) <= 1)


def test_dicom_voi_window_is_applied(tmp_path: Path) -> None:
    """With a window over the lower half of the values, the upper half saturates white."""
    ramp = gradient16()
    path = write_dicom(tmp_path / "window.dcm", ramp, "MONOCHROME2", window=(15000, 30000))
    row = read_image(path)[0, :, 0].astype(int)
    bright = ramp[0] >= 30000
    assert (row[bright] == 255).all()
    assert len(set(row[~bright].tolist())) > 5  # the window's inside still has a gradient


def test_dicom_modality_rescale_keeps_the_picture(tmp_path: Path) -> None:
    ramp = gradient16()
    plain = read_image(write_dicom(tmp_path / "plain.dcm", ramp, "MONOCHROME2"))
    rescaled = read_image(
        write_dicom(tmp_path / "ct.dcm", ramp, "MONOCHROME2", rescale=(2.0, -1024.0))
    )
    assert np.abs(plain.astype(int) - rescaled.astype(int)).max() <= 1


def test_dicom_by_content_without_the_suffix(odd_images: dict[str, Path], tmp_path: Path) -> None:
    renamed = tmp_path / "scan.img"
    renamed.write_bytes(odd_images["mono2"].read_bytes())
    assert (read_image(renamed) == read_image(odd_images["mono2"])).all()


def test_dicom_without_the_extra_names_the_install_command(
    odd_images: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    block_pydicom(monkeypatch)
    with pytest.raises(DependencyError, match=r"cxr-covid\[dicom\]"):
        read_image(odd_images["mono2"])


@pytest.mark.parametrize("method", sorted(RESIZE_METHODS))
@pytest.mark.parametrize("mode", ["L", "RGB", "P", "I;16", "RGBA"])
def test_load_for_model_equals_read_then_resize(tmp_path: Path, method: str, mode: str) -> None:
    """Whatever shortcut load_for_model takes, it returns exactly read_image + resize."""
    rng = np.random.default_rng(3)
    base = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    img = Image.fromarray(base)
    if mode == "L":
        img = img.convert("L")
    elif mode == "P":
        img = img.convert("P")
    elif mode == "I;16":
        img = Image.fromarray(base[..., 0].astype(np.uint16) * 257)
    elif mode == "RGBA":
        img = Image.fromarray(np.dstack([base, base[..., :1]]), mode="RGBA")
    path = tmp_path / "x.png"
    img.save(path)
    prep = Preprocessing(image_size=24, resize=method)
    expected = resize(read_image(path), 24, method)
    assert np.array_equal(load_for_model(path, prep), expected)
    assert load_for_model(path, prep).dtype == np.uint8


def test_real_sample_images_all_decode(cxr_sample: Path) -> None:
    files = sorted(p for p in cxr_sample.rglob("*") if p.suffix.lower() in (".png", ".jpeg"))
    assert len(files) == 24
    for path in files:
        pixels = load_for_model(path, Preprocessing(image_size=32))
        assert pixels.shape == (32, 32, 3)
        assert pixels.std() > 5  # a real radiograph, not a blank


@pytest.mark.parametrize("name", ["good", "cmyk", "gray16", "rgba", "palette", "exif", "mono1"])
def test_load_for_model_equals_read_then_resize_on_odd_files(
    odd_images: dict[str, Path], name: str
) -> None:
    prep = Preprocessing(image_size=16)
    expected = resize(read_image(odd_images[name]), 16, "nearest")
    assert np.array_equal(load_for_model(odd_images[name], prep), expected)
