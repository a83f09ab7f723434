"""Sharing models: `models pack` writes one zip; `models import` verifies and stores one.

A pack is a zip holding:

    cxr-covid-pack.json   what it is: kind, pack format, model id, and each file's sha256
    model.keras           the Keras model, as the store keeps it
    model.json            the model record (provenance, training settings, evaluations)
    MODEL_CARD.md         the model card (Mitchell et al. 2019), written from the record
    preprocessing.json    what a user of the weights must apply (see export.py)

The store saves the model the training picked (a fresh, uncompiled copy given the best
weights: training/run.py), so `model.keras` carries no optimizer state and a pack is about the
size of the weights.

Import treats a pack as hostile until checked: it is downloaded with the tool's resuming,
retrying, verifying downloader (data/download.py), unpacked with its traversal and zip-bomb
guards (data/extract.py) into a hidden folder, every file is checked against the pack's own
hashes, the record is parsed, and the Keras file is loaded with safe_mode=True (no code from
the archive runs). Only then does the model folder appear in the store, atomically.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import re
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from cxr_covid import atomic, jsonfile, paths
from cxr_covid.about import __version__
from cxr_covid.data.dataset import check_name
from cxr_covid.data.download import check_url, fetch
from cxr_covid.data.extract import Limits, safe_extract
from cxr_covid.data.manifest import sha256_file
from cxr_covid.errors import DownloadError, ModelError, UsageError, WriteError
from cxr_covid.models import store
from cxr_covid.sharing.card import CARD_FILE, dataset_info_for, render
from cxr_covid.sharing.export import PREPROCESSING_FILE, preprocessing_spec

PACK_MANIFEST = "cxr-covid-pack.json"
PACK_KIND = "cxr-covid-model"
PACK_FORMAT = 1
PACK_SUFFIX = ".cxr-model.zip"
# The most a pack may be, downloaded (issue 22, case 4): the study's largest network,
# Inception v3, packs to about 90 MB; 2 GiB leaves room for far larger ones while an endless
# or lying server is stopped long before the disk fills.
MAX_PACK_BYTES = 2 * 1024**3
# What to do when a model URL answers with a sign-in or error page: no Kaggle credentials.
MODEL_ACCESS_HELP = (
    "this server wants a login that cxr-covid cannot give; download the pack in a browser "
    "and import the file: cxr-covid models import PATH"
)
PACK_FILES = (store.MODEL_FILE, store.RECORD_FILE, CARD_FILE, PREPROCESSING_FILE)

ByteProgress = Callable[[int, int | None], None]


@dataclass(frozen=True)
class PackResult:
    model_id: str
    path: Path
    sha256: str
    bytes: int
    weights_bytes: int  # model.keras alone
    recorded: bool = True  # the sha256 was added to the model record

    def to_dict(self) -> dict[str, Any]:
        """`models pack --json`."""
        return {
            "model_id": self.model_id,
            "path": str(self.path),
            "sha256": self.sha256,
            "bytes": self.bytes,
            "weights_bytes": self.weights_bytes,
            "recorded": self.recorded,
        }


@dataclass(frozen=True)
class ImportResult:
    model: store.StoredModel
    source: str
    sha256: str
    bytes: int
    replaced: bool

    def to_dict(self) -> dict[str, Any]:
        """`models import --json`."""
        return {
            "model_id": self.model.id,
            "path": str(self.model.root),
            "source": self.source,
            "sha256": self.sha256,
            "bytes": self.bytes,
            "replaced": self.replaced,
        }


def check_sha256(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise UsageError(f"--sha256 {value!r}: expected 64 hexadecimal digits")
    return value


def pack_model(
    stored: store.StoredModel, out: Path | None = None, *, force: bool = False
) -> PackResult:
    """Write `stored` as one zip (default `<id>.cxr-model.zip` here) and record its sha256."""
    record = stored.record()
    if not stored.model_path.is_file():
        raise ModelError(f"{stored.root}: no {store.MODEL_FILE}; not a complete model")
    target = _pack_target(out, record.id, force)
    texts = {
        store.RECORD_FILE: json.dumps(record.to_dict(), indent=2, default=str) + "\n",
        CARD_FILE: render(record, dataset_info_for(record)),
        PREPROCESSING_FILE: json.dumps(preprocessing_spec(record, store.MODEL_FILE), indent=2)
        + "\n",
    }
    files: dict[str, dict[str, Any]] = {
        store.MODEL_FILE: {
            "sha256": sha256_file(stored.model_path),
            "bytes": stored.model_path.stat().st_size,
        }
    }
    for name, text in texts.items():
        data = text.encode("utf-8")
        files[name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    manifest = {
        "kind": PACK_KIND,
        "pack_format": PACK_FORMAT,
        "model_id": record.id,
        "created": store.now_iso(),
        "tool": f"cxr-covid {__version__}",
        "files": files,
    }
    try:
        with (
            atomic.open_for_write(target, "wb") as handle,
            zipfile.ZipFile(handle, "w") as archive,
        ):
            archive.writestr(
                PACK_MANIFEST, json.dumps(manifest, indent=2) + "\n", zipfile.ZIP_DEFLATED
            )
            # model.keras is itself a zip: deflating it again gains nothing.
            archive.write(stored.model_path, store.MODEL_FILE, zipfile.ZIP_STORED)
            for name, text in texts.items():
                archive.writestr(name, text, zipfile.ZIP_DEFLATED)
        digest = sha256_file(target)
        size = target.stat().st_size
        atomic.write_text(target.with_name(target.name + ".sha256"), f"{digest}  {target.name}\n")
    except OSError as exc:
        raise UsageError(f"cannot write {target} ({exc.strerror or exc})") from exc
    record = stored.reload_record()  # what was written meanwhile is kept
    packs = list(record.sharing.get("packs", []))
    packs.append(
        {"file": target.name, "sha256": digest, "bytes": size, "created": manifest["created"]}
    )
    record.sharing = {**record.sharing, "packs": packs}
    try:
        stored.write_record(record)
        recorded = True
    # A read-only model folder given by path: the .sha256 file still has the hash. The
    # record's write reports it as a WriteError (atomic.writing).
    except (OSError, WriteError):
        recorded = False
    return PackResult(record.id, target, digest, size, files[store.MODEL_FILE]["bytes"], recorded)


def _pack_target(out: Path | None, model_id: str, force: bool) -> Path:
    """Where the pack goes. Never `-` (a pack is a binary zip plus its .sha256 file, not a
    stream) and never over anything but a regular file: `--force` over /dev/null as root
    used to replace the device node (issue 22, case 7)."""
    if out is not None and str(out) == "-":
        raise UsageError(
            "--out -: a pack cannot be written to standard output (it is a zip with a "
            ".sha256 file beside it); give a file name"
        )
    target = Path(out).expanduser() if out is not None else Path(model_id + PACK_SUFFIX)
    if target.is_dir():
        target = target / (model_id + PACK_SUFFIX)
    for path in (target, target.with_name(target.name + ".sha256")):
        if (path.exists() or path.is_symlink()) and not path.is_file():
            raise UsageError(
                f"{path} exists and is not a regular file (a device, pipe, socket or broken "
                "link): it is never replaced, even with --force; choose another --out"
            )
    if target.exists() and not force:
        raise UsageError(f"{target} exists: choose another --out, or add --force to replace it")
    return target


def open_pack(archive: Path, dest: Path, *, limits: Limits | None = None) -> Path:
    """Unpack and verify a pack into the new folder `dest`; returns `dest`.

    Raises ModelError when the file is not a cxr-covid model pack or does not verify, and
    ArchiveError when the zip is hostile (traversal, links, bomb).
    """
    if not zipfile.is_zipfile(archive):
        raise ModelError(f"{archive.name}: not a cxr-covid model pack (not a zip archive)")
    dest.mkdir(parents=True)  # a fresh folder: raises rather than mix with existing files
    scratch = atomic.temp_dir_beside(dest)
    try:
        safe_extract(archive, scratch, limits=limits)
        manifest = _read_manifest(scratch, archive.name)
        for name in PACK_FILES:
            expected = manifest["files"].get(name)
            found = scratch / name
            if not found.is_file():
                raise ModelError(f"{archive.name}: the pack lacks {name}; not a complete model")
            if not isinstance(expected, dict) or not hmac.compare_digest(
                str(expected.get("sha256", "")), sha256_file(found)
            ):
                raise ModelError(
                    f"{archive.name}: {name} does not match the pack's own sha256 "
                    "(damaged or altered)"
                )
            shutil.move(str(found), dest / name)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    try:
        verify_model_folder(dest, archive.name)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return dest


def _read_manifest(folder: Path, name: str) -> dict[str, Any]:
    path = folder / PACK_MANIFEST
    try:
        manifest = jsonfile.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(
            f"{name}: not a cxr-covid model pack (no {PACK_MANIFEST}; make one with "
            "`cxr-covid models pack`)"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"{name}: corrupt {PACK_MANIFEST} ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("kind") != PACK_KIND:
        raise ModelError(f"{name}: not a cxr-covid model pack ({PACK_MANIFEST} says otherwise)")
    fmt = manifest.get("pack_format")
    if not isinstance(fmt, int) or fmt > PACK_FORMAT:
        raise ModelError(
            f"{name}: pack format {fmt!r} is newer than this cxr-covid understands "
            f"({PACK_FORMAT}); upgrade cxr-covid"
        )
    if not isinstance(manifest.get("files"), dict):
        raise ModelError(f"{name}: {PACK_MANIFEST} lists no files")
    return manifest


def verify_model_folder(folder: Path, name: str) -> store.ModelRecord:
    """The record parses and the Keras file loads in safe mode with the record's shapes."""
    stored = store.StoredModel(folder)
    try:
        record = stored.record()
    except ModelError as exc:
        raise ModelError(f"{name}: {exc}") from exc
    model = store.load_keras_file(stored.model_path)  # safe_mode=True: no code runs
    store.check_network_matches(model, record, Path(name))
    return record


def _is_url(source: str) -> bool:
    return source.lower().startswith(("http://", "https://"))


def _public_source(source: str) -> str:
    """A URL without user:password@ or query (signed URLs), for the record."""
    if not _is_url(source):
        return str(Path(source).expanduser().resolve())
    parsed = urlparse(source)
    netloc = (parsed.hostname or "") + (f":{parsed.port}" if parsed.port else "")
    return parsed._replace(netloc=netloc, query="", fragment="").geturl()


def import_model(
    source: str,
    *,
    sha256: str | None = None,
    name: str | None = None,
    force: bool = False,
    progress: ByteProgress | None = None,
) -> ImportResult:
    """Store the model in a pack file or URL, verified; refuses to replace without `force`."""
    sha256 = check_sha256(sha256)
    if name is not None:
        check_name(name)
    downloaded: Path | None = None
    if _is_url(source):
        check_url(source)
        key = hashlib.sha256(_public_source(source).encode()).hexdigest()[:16]
        downloaded = paths.ensure(paths.home() / "downloads") / f"model-{key}.zip"
        archive = fetch(
            source,
            downloaded,
            sha256=sha256,
            progress=progress,
            access_help=MODEL_ACCESS_HELP,
            max_bytes=MAX_PACK_BYTES,
            limit_hint=" (the most a model pack may be)",
        )
    else:
        archive = Path(source).expanduser()
        if not archive.is_file():
            raise UsageError(f"{source}: no such file (give a pack file or an http(s) URL)")
    try:
        digest = sha256_file(archive)
        if sha256 and not hmac.compare_digest(digest, sha256):
            raise DownloadError(
                f"{archive.name} has sha256 {digest}, expected {sha256}: not the file you "
                "meant, or a damaged copy"
            )
        return _store_pack(archive, source, digest, name, force)
    finally:
        if downloaded is not None:  # a kept .part (interrupted transfer) stays for resuming
            with contextlib.suppress(FileNotFoundError):
                downloaded.unlink()
            with contextlib.suppress(OSError):
                downloaded.parent.rmdir()


def _store_pack(
    archive: Path, source: str, digest: str, name: str | None, force: bool
) -> ImportResult:
    staging = atomic.temp_dir_beside(paths.models_dir() / ".import")
    try:
        folder = open_pack(archive, staging / "model")
        stored = store.StoredModel(folder)
        record = stored.record()
        model_id = name or record.id
        check_name(model_id)
        target = store.model_dir(model_id)
        replaced = target.exists()
        if replaced and not force:
            raise UsageError(
                f"a model named {model_id!r} already exists: add --force to replace it, "
                "or --name to import it under another id"
            )
        if model_id != record.id:
            record.sharing = {**record.sharing, "original_id": record.id}
            record.id = model_id
        record.added = store.added_now()  # imported = added to this store: now the newest
        record.sharing = {
            **record.sharing,
            "imported_from": {
                "source": _public_source(source),
                "sha256": digest,
                "bytes": archive.stat().st_size,
                "imported": record.added,
            },
        }
        stored.write_record(record)
        try:
            atomic.commit_dir(folder, target, replace=force)
        except FileExistsError:
            raise UsageError(
                f"a model named {model_id!r} appeared meanwhile; add --force"
            ) from None
        return ImportResult(
            store.StoredModel(target),
            _public_source(source),
            digest,
            archive.stat().st_size,
            replaced,
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
