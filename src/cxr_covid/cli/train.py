"""`cxr-covid train`: options in, `cxr_covid.training.run.train` called, progress and result out.

Progress and messages go to stderr; the result (table or --json) to stdout, so
`cxr-covid train --json > result.json` captures only the result.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from cxr_covid.cli.choices import Arch, InputView, Normalize, Precision, Resize, Strategy
from cxr_covid.cli.console import accuracy_cell, err, out, print_json
from cxr_covid.errors import EXIT_INTERRUPTED, UsageError
from cxr_covid.text import format_duration
from cxr_covid.training.limits import (
    DEFAULT_ADVERSARIAL_WEIGHT,
    MAX_ADVERSARIAL_WEIGHT,
    MAX_BATCH_SIZE,
    MAX_EPOCHS,
    MAX_IMAGE_SIZE,
    MAX_SEED,
    MIN_IMAGE_SIZE,
)

if TYPE_CHECKING:
    from cxr_covid.models.flops import ArchSummary
    from cxr_covid.training.events import EpochReport, RunInfo, TrainResult

HELP = "Train the study's baseline or inception network from scratch into the model store."

# Options that define a run: with --resume they come from the interrupted run instead
# (--name is not one: it may give the finished model another id than the run's).
_RUN_OPTIONS = (
    "arch",
    "dataset",
    "epochs",
    "batch_size",
    "image_size",
    "learning_rate",
    "seed",
    "early_stopping",
    "augment",
    "deterministic",
    "strategy",
    "precision",
    "resize",
    "calibrate",
    "balance_sources",
    "augment_acquisition",
    "input_view",
    "normalize",
    "augment_markers",
    "adversarial_source",
    "adversarial_weight",
)


def train(
    ctx: typer.Context,
    arch: Annotated[
        Arch,
        typer.Option(
            "--arch",
            "-a",
            help="Network: baseline, inception (the study's) or inception-nb (its notebook's).",
        ),
    ] = "baseline",
    dataset: Annotated[
        str | None,
        typer.Option("--dataset", "-d", help="Dataset name (default: the newest downloaded)."),
    ] = None,
    epochs: Annotated[
        int, typer.Option("--epochs", "-e", min=1, max=MAX_EPOCHS, help="Epochs (study: 30).")
    ] = 30,
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size", "-b", min=1, max=MAX_BATCH_SIZE, help="Global batch size (study: 32)."
        ),
    ] = 32,
    image_size: Annotated[
        int,
        typer.Option(
            "--image-size",
            min=MIN_IMAGE_SIZE,
            max=MAX_IMAGE_SIZE,
            help="Square input size in pixels (study: 224).",
        ),
    ] = 224,
    learning_rate: Annotated[
        float, typer.Option("--learning-rate", help="Adam learning rate (study: 1e-3).")
    ] = 1e-3,
    seed: Annotated[
        int, typer.Option("--seed", min=0, max=MAX_SEED, help="Seed for weights and shuffling.")
    ] = 42,
    early_stopping: Annotated[
        int | None,
        typer.Option(
            "--early-stopping",
            metavar="N",
            min=1,
            max=MAX_EPOCHS,
            help="Stop after N epochs without a better validation accuracy.",
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            help="Model id in the store (default: arch-dataset-time). With --resume: save "
            "the run under this id instead of its own.",
        ),
    ] = None,
    augment: Annotated[
        bool,
        typer.Option("--augment", help="Add the augmented training images (`cxr-covid augment`)."),
    ] = False,
    summary: Annotated[
        bool,
        typer.Option(
            "--summary",
            help="Print the network at --image-size (layers, shapes, parameters, GFLOPs) "
            "and exit without training.",
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the result as JSON on stdout.")
    ] = False,
    resume_run: Annotated[
        str | None,
        typer.Option(
            "--resume",
            metavar="MODEL",
            help="Continue an interrupted run from its last completed epoch.",
        ),
    ] = None,
    deterministic: Annotated[
        bool,
        typer.Option(
            "--deterministic",
            help="Deterministic ops: same seed, same weights (on CPU; slower on GPU).",
        ),
    ] = False,
    strategy: Annotated[
        Strategy,
        typer.Option(
            "--strategy",
            help="tf.distribute strategy: auto, one-device, mirrored (GPUs of this machine) "
            "or multi-worker (cluster from TF_CONFIG).",
        ),
    ] = "auto",
    precision: Annotated[
        Precision,
        typer.Option(
            "--precision",
            help="auto (float16 on a tensor-core GPU, bfloat16 on a CPU with AMX, else "
            "float32), float32, bfloat16, float16, or mixed (the device's best mixed one).",
        ),
    ] = "auto",
    resize: Annotated[
        Resize,
        typer.Option(
            "--resize",
            help="Resize filter: nearest (the study's), bilinear, bicubic, area or lanczos.",
        ),
    ] = "nearest",
    seeds: Annotated[
        int,
        typer.Option(
            "--seeds",
            min=1,
            help="Train N models with seeds --seed + i as a group named by --name; "
            "then `cxr-covid eval --group NAME` shows the spread. Rerun to continue or extend.",
        ),
    ] = 1,
    calibrate: Annotated[
        bool,
        typer.Option(
            "--calibrate/--no-calibrate",
            help="At the end, fit temperature scaling and the out-of-distribution guard on "
            "the validation split (`cxr-covid calibrate` does it later).",
        ),
    ] = True,
    balance_sources: Annotated[
        bool,
        typer.Option(
            "--balance-sources",
            help="Within each class, let every collection (manifest column `collection`) "
            "weigh the same.",
        ),
    ] = False,
    augment_acquisition: Annotated[
        bool,
        typer.Option(
            "--augment-acquisition",
            help="Randomise how each film looks acquired (contrast, gamma, blur, noise, JPEG, "
            "resize chains, small shifts), on the fly.",
        ),
    ] = False,
    input_view: Annotated[
        InputView,
        typer.Option(
            "--input",
            help="full (the study's), or lungs: hide everything outside the fixed lung field "
            "(also in predict, eval, heatmap).",
        ),
    ] = "full",
    normalize: Annotated[
        Normalize,
        typer.Option(
            "--normalize",
            help="none (the study's), equalize (global histogram equalisation) or clahe "
            "(adaptive, scikit-image): per image, also in predict, eval, heatmap, export.",
        ),
    ] = "none",
    augment_markers: Annotated[
        bool,
        typer.Option(
            "--augment-markers",
            help="Paste random burned-in markers (R/L letters, kV/mAs text, bright boxes) into "
            "the margins of training films of every class, on the fly.",
        ),
    ] = False,
    adversarial_source: Annotated[
        bool,
        typer.Option(
            "--adversarial-source",
            help="Add a head that predicts each image's collection within its class, trained "
            "through gradient reversal so the features forget the source (not stored).",
        ),
    ] = False,
    adversarial_weight: Annotated[
        float,
        typer.Option(
            "--adversarial-weight",
            metavar="W",
            help="How strongly the reversed gradient pushes the features "
            f"(above 0, at most {MAX_ADVERSARIAL_WEIGHT:g}).",
        ),
    ] = DEFAULT_ADVERSARIAL_WEIGHT,
) -> None:
    from cxr_covid.data.dataset import check_name
    from cxr_covid.training import run as training

    config = training.TrainConfig(
        arch=arch,
        dataset=dataset,
        epochs=epochs,
        batch_size=batch_size,
        image_size=image_size,
        learning_rate=learning_rate,
        seed=seed,
        early_stopping=early_stopping,
        name=name,
        augment=augment,
        deterministic=deterministic,
        strategy=strategy,
        precision=precision,
        resize=resize,
        calibrate=calibrate,
        balance_sources=balance_sources,
        augment_acquisition=augment_acquisition,
        input=input_view,
        normalize=normalize,
        augment_markers=augment_markers,
        adversarial_source=adversarial_source,
        adversarial_weight=adversarial_weight,
    )
    if summary:
        if resume_run:
            raise UsageError("--summary and --resume do not go together")
        result = training.summarize(arch, image_size)
        if as_json:
            print_json(result.to_dict(), schema="train-summary")
        else:
            _print_summary(result)
        return

    if seeds > 1:
        if resume_run:
            raise UsageError(
                "--seeds and --resume do not go together: rerun the same --seeds command "
                "(with its --name) to continue the group"
            )
        from cxr_covid.cli.seeds_view import train_seeds

        train_seeds(config, seeds, _TrainView(), as_json)
        return

    if resume_run:
        given = [
            "--" + option.removesuffix("_view").replace("_", "-")
            for option in _RUN_OPTIONS
            if _explicit(ctx, option)
        ]
        if given:
            raise UsageError(
                f"--resume continues a run with its own options; drop {', '.join(given)}"
            )
        if name is not None:
            check_name(name)
    else:
        config.validate()

    _train_and_report(config, resume_run, name, as_json)


def _train_and_report(config: Any, resume_run: str | None, name: str | None, as_json: bool) -> None:
    """Train (or resume) with the progress on stderr; the result as a table or JSON."""
    from cxr_covid.training import run as training

    view = _TrainView()
    try:
        with view.reporter as reporter:
            if resume_run:
                result_obj = training.resume(
                    resume_run, reporter, name=name, on_start=view.start, on_epoch=view.epoch
                )
            else:
                result_obj = training.train(
                    config, reporter, on_start=view.start, on_epoch=view.epoch
                )
    except training.TrainingInterrupted as exc:
        err.print(f"[yellow]Interrupted.[/] {exc}", soft_wrap=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except KeyboardInterrupt:
        err.print("[yellow]Interrupted[/] before the first epoch; nothing was saved.")
        raise typer.Exit(EXIT_INTERRUPTED) from None

    if as_json:
        print_json(result_obj.to_dict(), schema="train")
    else:
        _print_result(result_obj)


def _explicit(ctx: typer.Context, option: str) -> bool:
    """Whether the user gave `option` (by name, so as not to depend on Typer's click)."""
    source = ctx.get_parameter_source(option)
    return source is not None and getattr(source, "name", "") != "DEFAULT"


class _TrainView:
    """Training on stderr: the one progress renderer (cache building, the steps of each
    epoch) plus the run's header and one line per finished epoch above the bars."""

    def __init__(self) -> None:
        from cxr_covid.cli.progress_view import RichReporter

        self.reporter = RichReporter()
        self._val_images = 0

    def start(self, info: RunInfo) -> None:
        console = self.reporter.console
        resumed = f", resuming at epoch {info.first_epoch}" if info.first_epoch > 1 else ""
        reason = f" ({info.precision_reason})" if info.precision_reason else ""
        console.print(
            f"Training [bold]{info.architecture}[/] as [bold]{info.run_id}[/] on "
            f"{info.dataset}: {info.train_images} training / {info.val_images} validation "
            f"images, classes {', '.join(info.classes)}{resumed}",
            soft_wrap=True,
        )
        console.print(
            f"[dim]{info.device}; strategy {info.strategy} ({info.replicas} replica(s)); "
            f"precision {info.precision}{reason}[/]",
            soft_wrap=True,
        )
        for note in info.notes:
            console.print(f"[yellow]Note:[/] {note}", soft_wrap=True)
        self._val_images = info.val_images

    def epoch(self, report: EpochReport) -> None:
        console = self.reporter.console
        mark = "[green]*[/]" if report.improved else " "
        console.print(
            f"epoch {report.epoch:>2}/{report.epochs}  loss {report.loss:.4f} "
            f"acc {100 * report.accuracy:5.1f}%  val loss {report.val_loss:.4f} "
            f"acc {accuracy_cell(report.val_accuracy, self._val_images)}{mark} "
            f"{format_duration(report.seconds)}  ETA {format_duration(report.eta_seconds)}",
            highlight=False,
        )
        if report.stopping_early:
            console.print(
                f"[yellow]Early stopping:[/] no better validation accuracy since epoch "
                f"{report.best_epoch}."
            )


def _settings(config: dict[str, Any]) -> str:
    """Compact layer settings: '32 3x3 same relu', '64 relu', 'pool 2x2', 'rate 0.3'."""
    parts: list[str] = []
    if "filters" in config:
        parts.append(str(config["filters"]))
    if "units" in config:
        parts.append(str(config["units"]))
    if "kernel_size" in config:
        parts.append("x".join(map(str, config["kernel_size"])))
    if "pool_size" in config:
        parts.append("x".join(map(str, config["pool_size"])))
    if "padding" in config:
        parts.append(str(config["padding"]))
    if "activation" in config:
        parts.append(str(config["activation"]))
    if "rate" in config:
        parts.append(f"rate {config['rate']}")
    return " ".join(parts)


def _print_summary(summary: ArchSummary) -> None:
    table = Table(
        title=f"{summary.architecture} at {summary.image_size}x{summary.image_size}, "
        f"{summary.num_classes} classes",
        title_justify="left",
    )
    for column, justify in (
        ("layer", "left"),
        ("type", "left"),
        ("output shape", "right"),
        ("settings", "left"),
        ("params", "right"),
        ("MFLOPs", "right"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for layer in summary.layers:
        shape = "x".join("?" if d is None else str(d) for d in layer.output_shape[1:])
        settings = _settings(layer.config)
        table.add_row(
            layer.name,
            layer.type,
            shape,
            settings,
            f"{layer.params:,}",
            f"{layer.flops / 1e6:,.1f}",
        )
    out.print(table)
    out.print(
        f"Parameters: {summary.params:,} ({summary.trainable_params:,} trainable). "
        f"Forward pass: {summary.forward_gflops:.3f} GFLOPs per image "
        "(a multiply-add counts 2; training costs about 3x)."
    )


def _print_result(result: TrainResult) -> None:
    record = result.record
    history = record.history
    val_images = int(record.dataset.get("val_images", 0))
    table = Table(title=f"Model {record.id}", title_justify="left")
    for column in ("epoch", "loss", "acc", "val loss", "val acc", "time"):
        table.add_column(column, justify="right")
    for i, loss in enumerate(history.loss):
        best = i + 1 == result.best_epoch
        style = "bold green" if best else None
        table.add_row(
            f"{i + 1}{' *' if best else ''}",
            f"{loss:.4f}",
            f"{100 * history.accuracy[i]:.2f}%",
            f"{history.val_loss[i]:.4f}",
            accuracy_cell(history.val_accuracy[i], val_images),
            format_duration(history.seconds[i]),
            style=style,
        )
    out.print(table)
    facts = Table(show_header=False, box=None)
    facts.add_row("model", f"{record.id}  ({result.model.root})")
    facts.add_row(
        "best epoch",
        f"{result.best_epoch} (val accuracy {accuracy_cell(result.best_val_accuracy, val_images)})",
    )
    facts.add_row("training time", format_duration(result.seconds))
    facts.add_row("throughput", f"{result.images_per_second:,.1f} images/s")
    facts.add_row("device", str(record.training.get("device", "")))
    temperature = record.calibration.get("temperature")
    facts.add_row(
        "calibration",
        f"temperature {temperature:.4g}, out-of-distribution guard fitted"
        if temperature
        else "none (--no-calibrate): probabilities are uncalibrated, no OOD guard",
    )
    out.print(facts)
    out.print(
        f"[dim]Next: `cxr-covid eval {record.id}` (validation accuracy on a small split "
        "is optimistic: the best epoch was chosen on it).[/]",
        soft_wrap=True,
    )
