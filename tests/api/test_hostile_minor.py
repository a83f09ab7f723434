"""Issue 22, case 12: the minor items. Each was a traceback, a wrong exit code or silence."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import cxr_covid
from cxr_covid.api import InvalidImageArray, rgb_from_array
from cxr_covid.cli import app
from cxr_covid.data.lungs import read_mask
from cxr_covid.errors import EXIT_USAGE, EXIT_WRITE, DataError
from tests.data.zips import layout_zip

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]


def test_huge_api_array_is_a_clear_error_not_a_memory_error() -> None:
    huge = np.broadcast_to(np.uint8(0), (100_000, 100_000))  # no memory behind it
    with pytest.raises(InvalidImageArray, match="too large"):
        rgb_from_array(huge)


def test_bytes_given_to_predict_say_what_to_pass(tiny: Path) -> None:
    model = cxr_covid.load_model("tiny-baseline")
    for given in (b"\x89PNG....", [b"\x89PNG...."]):
        with pytest.raises(InvalidImageArray, match="image bytes are not accepted"):
            model.predict(given)


def test_repeated_threshold_is_refused(tiny: Path, xrays: list[Path]) -> None:
    result = runner.invoke(
        app,
        [
            *("predict", str(xrays[0]), "-m", "tiny-baseline", "-o", "-"),
            *("--threshold", "covid=0.3", "--threshold", "covid=0.9"),
        ],
    )
    assert result.exit_code == EXIT_USAGE, result.output
    assert "--threshold given 2 times" in result.stderr


def test_gradient_is_refused_as_a_lung_mask(tmp_path: Path) -> None:
    ramp = np.tile(np.linspace(0, 255, 64).astype(np.uint8), (64, 1))
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    with pytest.raises(DataError, match="not a lung mask"):
        read_mask(tmp_path / "ramp.png", 64, 64)
    binary = np.where(ramp > 127, 255, 0).astype(np.uint8)
    Image.fromarray(binary).save(tmp_path / "mask.png")
    assert read_mask(tmp_path / "mask.png", 64, 64).sum() == 64 * 32


def _tmpfs_works(probe: Path) -> bool:
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return False
    probe.mkdir()
    script = f"mount -t tmpfs -o size=64k none {probe} && touch {probe}/x"
    return (
        subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True).returncode == 0
    )


def test_full_disk_during_download_from_zip_exits_10(tmp_path: Path) -> None:
    if not _tmpfs_works(tmp_path / "probe"):
        pytest.skip("tmpfs mounts in a user namespace are not allowed here")
    archive = tmp_path / "release.zip"
    archive.write_bytes(layout_zip("current", per_class=10, size=200))  # ~3 MB of noise PNGs
    home = tmp_path / "home"
    home.mkdir()
    env = dict(os.environ, CXR_COVID_HOME=str(home), TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = os.pathsep.join([str(Path(cxr_covid.__file__).parents[1]), str(REPO)])
    script = (
        f"mount -t tmpfs -o size=1m none {home} || exit 99\n"
        f"{sys.executable} -m cxr_covid download --from-zip {archive}\n"
        f"echo $? > {tmp_path}/rc; ls -A {home} > {tmp_path}/left"
    )
    done = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert (tmp_path / "rc").read_text().strip() == str(EXIT_WRITE), done.stderr[-3000:]
    assert "Error: cannot write" in done.stderr and "No space left" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
