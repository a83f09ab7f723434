"""Zip archives built by the tests: every known Kaggle layout, and hostile ones."""

from __future__ import annotations

import io
import stat
import zipfile

import numpy as np
from PIL import Image

from cxr_covid import classes
from tests.helpers import blob_image

# (class, folder, file name pattern) per layout; {i} counts from 1.
LAYOUTS: dict[str, list[tuple[str, str]]] = {
    "first": [
        (classes.COVID, "COVID-19 Radiography Database/COVID-19/COVID-19 ({i}).png"),
        (classes.NORMAL, "COVID-19 Radiography Database/NORMAL/NORMAL ({i}).png"),
        (
            classes.VIRAL_PNEUMONIA,
            "COVID-19 Radiography Database/Viral Pneumonia/Viral Pneumonia ({i}).png",
        ),
    ],
    "intermediate": [
        (classes.COVID, "COVID-19 Radiography Database/COVID/COVID ({i}).png"),
        (classes.NORMAL, "COVID-19 Radiography Database/NORMAL/NORMAL ({i}).png"),
        (
            classes.VIRAL_PNEUMONIA,
            "COVID-19 Radiography Database/Viral Pneumonia/Viral Pneumonia ({i}).png",
        ),
    ],
    "current": [
        (classes.COVID, "COVID-19_Radiography_Dataset/COVID/images/COVID-{i}.png"),
        (classes.NORMAL, "COVID-19_Radiography_Dataset/Normal/images/Normal-{i}.png"),
        (
            classes.VIRAL_PNEUMONIA,
            "COVID-19_Radiography_Dataset/Viral Pneumonia/images/Viral Pneumonia-{i}.png",
        ),
        (
            classes.LUNG_OPACITY,
            "COVID-19_Radiography_Dataset/Lung_Opacity/images/Lung_Opacity-{i}.png",
        ),
    ],
}
EXTRAS: dict[str, dict[str, bytes]] = {
    "first": {"COVID-19 Radiography Database/Viral Pneumonia.matadata.xlsx": b"PK fake xlsx"},
    "intermediate": {"COVID-19 Radiography Database/COVID.metadata.xlsx": b"PK fake xlsx"},
    "current": {"COVID-19_Radiography_Dataset/README.md.txt": b"readme"},
}


def png_bytes(label: str, size: int, rng: np.random.Generator) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(blob_image(label, size, rng), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def mask_png_bytes(label: str, rng: np.random.Generator, size: int = 8) -> bytes:
    """A lung mask as the release ships one: black and white only (a grey picture is refused
    as a mask), with some lung."""
    mask = np.where(blob_image(label, size, rng) > 127, 255, 0).astype(np.uint8)
    mask[2:6, 1:3] = 255
    buffer = io.BytesIO()
    Image.fromarray(mask, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def layout_zip(layout: str, per_class: int = 10, size: int = 24, seed: int = 0) -> bytes:
    """A zip shaped like one Kaggle release, with `per_class` tiny PNGs per class (and lung
    masks beside the images in the current layout, which the catalogue must ignore)."""
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for label, pattern in LAYOUTS[layout]:
            for i in range(1, per_class + 1):
                name = pattern.format(i=i)
                archive.writestr(name, png_bytes(label, size, rng))
                if layout == "current":
                    archive.writestr(
                        name.replace("/images/", "/masks/"), mask_png_bytes(label, rng)
                    )
        for name, data in EXTRAS[layout].items():
            archive.writestr(name, data)
    return buffer.getvalue()


def with_member(base: bytes, info: zipfile.ZipInfo | str, data: bytes) -> bytes:
    """`base` plus one more member (hostile or broken)."""
    buffer = io.BytesIO(base)
    with zipfile.ZipFile(buffer, "a", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(info, data)
    return buffer.getvalue()


def special_member(name: str, kind: int, data: bytes = b"/etc/passwd") -> zipfile.ZipInfo:
    """A member recorded as a Unix symlink/device (`kind` like stat.S_IFLNK)."""
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (kind | 0o777) << 16
    return info


SYMLINK = stat.S_IFLNK
CHAR_DEVICE = stat.S_IFCHR
