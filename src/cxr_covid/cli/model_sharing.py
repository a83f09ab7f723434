"""`cxr-covid models export|pack|import|card`: models beyond the command line.

Registered on the `models` group by cli/app.py; the work is done by sharing/export.py, packs.py and
card.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cxr_covid.cli.choices import ExportFormat
from cxr_covid.cli.console import err, out, print_json

MODEL_ARG = typer.Argument(help="Model id or model folder (default: the newest model).")


def export(
    model: Annotated[str, MODEL_ARG] = "",
    fmt: Annotated[
        ExportFormat,
        typer.Option(
            "--format",
            "-f",
            # Escaped: help is rich markup, which would take [onnx] for a style and drop it.
            help="savedmodel (TensorFlow), onnx (needs cxr-covid\\[onnx]) or litert "
            "(needs cxr-covid\\[litert]).",
        ),
    ] = "savedmodel",
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Folder to create for the artifact and preprocessing.json "
            "(default: <model-id>-<format> in the model's folder).",
            show_default=False,
        ),
    ] = None,
    images: Annotated[
        list[Path] | None,
        typer.Option(
            "--check-image",
            help="An image to verify the export on (repeatable; default: 8 test images of "
            "the model's dataset, else seeded synthetic ones).",
            show_default=False,
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing --out.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Export a model for other runtimes (Keras' model.export), verified on 8 images."""
    from dataclasses import asdict

    from rich.markup import escape

    from cxr_covid.models import store
    from cxr_covid.sharing.export import (
        TOLERANCE,
        check_dependencies,
        check_installed,
        export_model,
    )
    from cxr_covid.tf_runtime import import_tensorflow_quietly

    check_installed(fmt)  # a missing extra is said at once, before TensorFlow loads
    stored = store.resolve(model or None)
    # The converters import TensorFlow: import it first, without its start-up noise.
    import_tensorflow_quietly()
    check_dependencies(fmt)  # before loading the model: a missing extra is said at once
    # Outputs that belong to a model go beside it (docs/home.md); --out puts them elsewhere.
    target = out_dir if out_dir is not None else stored.root / f"{stored.id}-{fmt}"
    result = export_model(
        stored,
        fmt,
        target,
        images=images or [],
        force=force,
        progress=lambda message: err.print(f"[dim]{escape(message)}[/]"),
    )
    if as_json:
        print_json({**asdict(result), "tolerance": TOLERANCE}, schema="models-export")
        return
    out.print(
        escape(
            f"exported {result.model_id} as {result.format} to {result.out} "
            f"({result.seconds:.1f} s)"
        ),
        soft_wrap=True,
    )
    out.print(
        escape(
            f"verified on {result.check_images} {result.check_source}: largest probability "
            f"difference from Keras {result.max_difference:.2e} (limit {TOLERANCE:g})"
        ),
        soft_wrap=True,
    )
    out.print(
        escape(f"preprocessing: {result.out / 'preprocessing.json'}"),
        soft_wrap=True,
    )


def pack(
    model: Annotated[str, MODEL_ARG] = "",
    out_file: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Pack file (or folder) to write (default: <model-id>.cxr-model.zip in the "
            "model's folder).",
            show_default=False,
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing pack file.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Write a model as one shareable zip (model, record, card, preprocessing) + its sha256."""
    from rich.markup import escape

    from cxr_covid.models import store
    from cxr_covid.sharing.packs import pack_model

    stored = store.resolve(model or None)
    # Beside the model by default (docs/home.md): a checkout or the current folder stays clean.
    result = pack_model(stored, out_file if out_file is not None else stored.root, force=force)
    if as_json:
        print_json(result.to_dict(), schema="models-pack")
        return
    out.print(
        escape(f"packed {result.model_id} into {result.path} ({result.bytes:,} bytes)"),
        soft_wrap=True,
    )
    out.print(f"sha256 {result.sha256}")
    where = "and the model record" if result.recorded else "(the model record is read-only)"
    err.print(
        escape(
            f"share it with: cxr-covid models import URL-OR-FILE --sha256 {result.sha256} "
            f"(the hash is also in {result.path.name}.sha256 {where})"
        ),
        soft_wrap=True,
    )


def import_(
    source: Annotated[
        str, typer.Argument(help="Pack file, or an http(s) URL of one.", show_default=False)
    ],
    sha256: Annotated[
        str | None,
        typer.Option(
            "--sha256",
            help="Expected sha256 of the pack (refused if it differs).",
            show_default=False,
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            help="Store it under this id (default: the pack's own id).",
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace a stored model with the same id.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Import a model pack (file or URL): verify, unpack safely, load in safe mode, store."""
    from rich.markup import escape

    from cxr_covid.cli.progress_view import RichReporter
    from cxr_covid.sharing.packs import import_model
    from cxr_covid.tf_runtime import import_tensorflow_quietly

    import_tensorflow_quietly()
    with RichReporter() as reporter:
        reporter.start("download", unit="bytes")  # a URL's transfer (a file: nothing to do)
        result = import_model(
            source,
            sha256=sha256,
            name=name,
            force=force,
            progress=lambda done, total: reporter.advance("download", done, total),
        )
    if as_json:
        print_json(result.to_dict(), schema="models-import")
        return
    verb = "replaced" if result.replaced else "imported"
    out.print(escape(f"{verb} model {result.model.id} from {result.source}"), soft_wrap=True)
    out.print(f"sha256 {result.sha256}" + ("" if sha256 else " (not checked: no --sha256 given)"))
    out.print(
        escape(
            f"predict with: cxr-covid predict FOLDER --model {result.model.id} --out results.csv"
        ),
        soft_wrap=True,
    )


def card(
    model: Annotated[str, MODEL_ARG] = "",
    out_file: Annotated[
        str | None,
        typer.Option(
            "--out",
            "-o",
            help="Also write a copy to this file or folder, or - for stdout (the card is "
            "always written beside the model, as MODEL_CARD.md in its folder).",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print where the card went as JSON (not with -o -).")
    ] = False,
) -> None:
    """Write the model card (Mitchell et al. 2019 sections) into the model's folder."""
    import sys

    from rich.markup import escape

    from cxr_covid import atomic
    from cxr_covid.errors import CxrCovidError, UsageError
    from cxr_covid.models import store
    from cxr_covid.sharing.card import CARD_FILE, dataset_info_for, render

    if as_json and out_file == "-":
        raise UsageError("--json and -o - both want stdout: choose one")
    stored = store.resolve(model or None)
    record = stored.record()
    text = render(record, dataset_info_for(record))
    say = err if (as_json or out_file == "-") else out  # stdout carries data then
    # Outputs that belong to a model go beside it (docs/home.md); a pack carries it too.
    beside: Path | None = stored.root / CARD_FILE
    try:
        atomic.write_text(stored.root / CARD_FILE, text)
    except (OSError, CxrCovidError) as exc:
        if out_file is None:
            raise
        err.print(escape(f"note: cannot write {beside} ({exc}); writing only --out"))
        beside = None
    else:
        say.print(escape(f"wrote the model card of {record.id} to {beside}"), soft_wrap=True)
    copy: Path | None = None
    if out_file == "-":
        sys.stdout.write(text)
    elif out_file is not None:
        copy = Path(out_file).expanduser()
        if copy.is_dir():
            copy = copy / CARD_FILE
        try:
            atomic.write_text(copy, text)
        except OSError as exc:
            raise UsageError(f"cannot write {copy} ({exc.strerror or exc})") from exc
        say.print(escape(f"and a copy to {copy}"), soft_wrap=True)
    if as_json:
        print_json(
            {
                "model_id": record.id,
                "path": str(beside) if beside else None,
                "copy": str(copy) if copy else None,
                "bytes": len(text.encode("utf-8")),
            },
            schema="models-card",
        )
