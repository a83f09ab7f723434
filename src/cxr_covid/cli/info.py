"""`cxr-covid info`: versions, home, devices, stored datasets and models."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from cxr_covid.cli.console import err, out, print_json

HELP = (
    "Show versions, the home folder, the devices TensorFlow sees, and stored datasets and models."
)


def info(
    as_json: Annotated[bool, typer.Option("--json", help="Print the same as JSON.")] = False,
) -> None:
    from cxr_covid.system import describe

    with err.status("Asking TensorFlow for devices...") if not as_json else _nullcontext():
        report = describe()
        precision = auto_precision()
    if as_json:
        data = report.to_dict()
        print_json(
            {
                **{k: data.pop(k) for k in ("versions", "home", "home_overridden", "devices")},
                "precision": precision,
                **data,
            },
            schema="info",
        )
        return
    versions = Table(title="cxr-covid", show_header=False, title_justify="left")
    for key, value in report.versions.items():
        versions.add_row(key, value)
    versions.add_row("home", report.home + ("  (CXR_COVID_HOME)" if report.home_overridden else ""))
    devices = ", ".join(f"{d['type']}:{d['name'].split(':', 1)[-1]}" for d in report.devices)
    versions.add_row("devices", devices or "none")
    flags = ", ".join(precision["cpu_bf16_flags"]) or "none"
    versions.add_row(
        "precision auto",
        f"{precision['auto']} ({precision['reason']}; CPU bfloat16 flags: {flags})",
    )
    out.print(versions)

    broken = "\n".join(
        escape(f"{d.name} is broken: {d.broken}") for d in report.datasets if d.broken
    )
    datasets = Table(
        title="Datasets", title_justify="left", caption=broken or None, caption_justify="left"
    )
    for column in (
        "name",
        "source",
        "images",
        "per class",
        "train/val/test",
        "augmented",
        "created",
    ):
        datasets.add_column(column)
    for ds in report.datasets:
        if ds.broken:  # listed, with its reason under the table, as `datasets list` does
            datasets.add_row(escape(ds.name), "[red]broken[/]", *["-"] * 5)
            continue
        datasets.add_row(
            ds.name,
            ds.source,
            str(ds.images),
            ", ".join(f"{k} {v}" for k, v in ds.classes.items()),
            "/".join(str(ds.splits.get(s, 0)) for s in ("train", "val", "test")),
            str(ds.augmented),
            ds.created,
        )
    out.print(datasets if report.datasets else "[dim]No datasets yet: `cxr-covid download`.[/]")

    from cxr_covid.cli.models import models_table

    models = models_table(report.models)
    out.print(models if report.models else "[dim]No models yet: `cxr-covid train`.[/]")


def auto_precision() -> dict[str, Any]:
    """What `train --precision auto` picks here: policy, reason, the CPU's bfloat16 flags."""
    from cxr_covid.training import precision

    choice = precision.choose_here("auto")
    flags = precision.bf16_flags(precision.cpu_flags())
    return {"auto": choice.policy, "reason": choice.reason, "cpu_bf16_flags": flags}


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *args: object) -> None:
        return None
