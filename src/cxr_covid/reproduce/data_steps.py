"""The data steps of a reproduce run: its settings, the dataset (downloaded or reused) and
the COVID-19 augmentation, each recorded in the run folder when done."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cxr_covid import classes, study
from cxr_covid.errors import DataError, UsageError
from cxr_covid.progress import Reporter
from cxr_covid.reproduce.results import ReproduceOptions
from cxr_covid.reproduce.run_folder import RunState


def default_dataset_name(options: ReproduceOptions, release: int | None) -> str:
    """The name `download` would give this source, so an existing download is reused."""
    try:
        from cxr_covid.data.ingest import resolve_source

        source = resolve_source(
            release=release if options.url is None and options.from_zip is None else None,
            url=options.url,
            from_zip=options.from_zip,
            from_dir=None,
        )
        return str(source.default_name)
    except ImportError:  # pragma: no cover - ingest ships with the package
        if options.from_zip is not None:
            return Path(options.from_zip).stem
        return f"kaggle-r{release}" if release else "kaggle-current"


def settings_of(options: ReproduceOptions, preset: study.Preset, dataset: str) -> dict[str, Any]:
    source: dict[str, Any]
    if options.from_zip is not None:
        source = {"zip": str(Path(options.from_zip).expanduser().resolve())}
    elif options.url is not None:
        source = {"url": options.url}
    else:
        source = {"kaggle_release": options.release or preset.release}
    return {
        "preset": preset.name,
        "study_protocol": preset.study_protocol
        and options.image_size in (None, preset.image_size)
        and options.epochs in (None, preset.epochs)
        and options.batch_size in (None, preset.batch_size),
        "dataset": dataset,
        "source": source,
        "image_size": options.image_size or preset.image_size,
        "epochs": options.epochs or preset.epochs,
        "batch_size": options.batch_size or preset.batch_size,
        "learning_rate": preset.learning_rate,
        "seed": preset.seed if options.seed is None else options.seed,
        "augment_factor": preset.augment_factor,
        "split": [0.7, 0.15, 0.15],
        **({"recipe": dict(preset.recipe)} if preset.recipe else {}),
    }


def study_options(
    spec: study.StudyModel,
    settings: dict[str, Any],
    dataset_name: str,
    *,
    group: str | None = None,
    deterministic: bool = False,
) -> dict[str, Any]:
    """The TrainConfig options of one study model under the run's settings."""
    return {
        "arch": spec.architecture,
        "dataset": dataset_name,
        "epochs": settings["epochs"],
        "batch_size": settings["batch_size"],
        "image_size": settings["image_size"],
        "learning_rate": settings["learning_rate"],
        "augment": spec.augment,
        "deterministic": deterministic,
        "group": group,
        **settings.get("recipe", {}),
    }


def ensure_dataset(
    options: ReproduceOptions, settings: dict[str, Any], state: RunState, reporter: Reporter
) -> Any:
    from cxr_covid.data.dataset import resolve_dataset

    name = settings["dataset"]
    done = state.step("download")
    try:
        dataset = resolve_dataset(name)
    except DataError:
        dataset = None
    if dataset is not None:
        if done is None:
            reporter.message(f"dataset {name!r} is already in the home: using it")
        else:
            reporter.message(f"download: done ({name})")
        if options.sources is not None:
            _attach(dataset, options.sources, reporter)
        if done is None:
            state.finish("download", dataset=name, reused=True)
        return dataset
    if done is not None:
        raise DataError(
            f"dataset {name!r} recorded by this run is gone from the home; use --restart "
            "to download it again"
        )
    from cxr_covid.data.ingest import download_dataset

    source = settings["source"]
    what = (
        f"Kaggle release {source['kaggle_release']}"
        if "kaggle_release" in source
        else source.get("zip") or source.get("url")
    )
    reporter.message(f"download: {what} -> dataset {name!r}, split 70/15/15 seed 42")

    result = download_dataset(
        release=source.get("kaggle_release"),
        url=source.get("url"),
        from_zip=Path(source["zip"]) if "zip" in source else None,
        name=name,
        classes=classes.STUDY_CLASSES,
        split=(0.7, 0.15, 0.15),
        seed=study.STUDY_SEED,
        reporter=reporter,
        sources=options.sources,
        find_sources=options.find_sources,
    )
    excluded = len(getattr(result, "excluded", []) or [])
    if excluded:
        reporter.message(f"{excluded} image(s) did not decode and were left out")
    state.finish("download", dataset=name, counts=getattr(result, "counts", {}))
    return result.dataset


def _attach(dataset: Any, sources: Path, reporter: Reporter) -> None:
    """`--sources` for a dataset already in the home: record where its images come from
    (the split and images stay, as with `download --sources FILE --dataset NAME`)."""
    from cxr_covid.data.provenance import attach_sources

    attached = attach_sources(dataset, sources)
    reporter.message(f"where the images come from: {sources} recorded for dataset {dataset.name!r}")
    for warning in attached.report.warnings:
        reporter.message(f"warning: {warning}")


def check_reachable(source: dict[str, Any]) -> None:
    """DownloadError at once when the dataset must be downloaded but the host's name cannot
    be looked up (no retries: being offline does not pass in 30 s)."""
    from cxr_covid.data.download import check_resolvable
    from cxr_covid.data.sources import kaggle_url

    if "url" in source:
        check_resolvable(str(source["url"]))
    elif "kaggle_release" in source:
        check_resolvable(kaggle_url(source["kaggle_release"]))


def ensure_augmented(
    dataset: Any, settings: dict[str, Any], state: RunState, reporter: Reporter
) -> None:
    if state.step("augment") is not None:
        reporter.message("augment: done")
        return
    from cxr_covid.data.augment import augment_dataset

    factor = settings["augment_factor"]
    reporter.message(f"augment: COVID-19 training images x{factor} (flips, rotations)")

    result = augment_dataset(
        dataset, factor=factor, classes=(classes.COVID,), seed=settings["seed"], reporter=reporter
    )
    before = getattr(result, "before", {}).get(classes.COVID)
    after = getattr(result, "after", {}).get(classes.COVID)
    if before is not None and after is not None:
        reporter.message(f"augment: COVID-19 training images {before} -> {after}")
    state.finish(
        "augment", before=getattr(result, "before", {}), after=getattr(result, "after", {})
    )


def dataset_exists(name: str) -> bool:
    from cxr_covid.data.dataset import dataset_path

    try:
        return (dataset_path(name) / "manifest.csv").is_file()
    except UsageError:
        return False
