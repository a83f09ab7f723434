"""The lung-blind control: the audited model's architecture and recipe trained with the lung
field hidden, kept in `<home>/audit/controls/<key>/` so a second audit reuses it."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path

from cxr_covid import paths
from cxr_covid.audit.results import CONTROL_TASK
from cxr_covid.errors import EXIT_INTERRUPTED, CxrCovidError, DataError
from cxr_covid.models import store
from cxr_covid.progress import NULL, Reporter


class AuditInterrupted(CxrCovidError):
    """Ctrl-C during an audit: no report is written; a control in training resumes."""

    exit_code = EXIT_INTERRUPTED


def controls_dir() -> Path:
    return paths.home() / "audit" / "controls"


def control_key(record: store.ModelRecord, epochs: int) -> str:
    text = json.dumps(
        {
            "model": record.id,
            "created": record.created,  # a new model under an old id gets a new control
            "manifest": record.dataset.get("manifest_sha256"),
            "epochs": epochs,
            "input": "no-lungs",
        },
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def ensure_control(
    record: store.ModelRecord,
    epochs: int,
    reporter: Reporter = NULL,
) -> tuple[store.StoredModel, bool]:
    """The cached lung-blind control of this (model, dataset), trained if missing.

    Returns (control, reused). Training goes through the run-grid (so it resumes after
    an interrupt) and the finished model is moved out of the store into the audit cache, so
    it never becomes the "newest model" other commands default to.
    """
    from cxr_covid.training import grid
    from cxr_covid.training.config import TrainConfig
    from cxr_covid.training.events import EpochReport, TrainingInterrupted

    key = control_key(record, epochs)
    target = controls_dir() / key
    if (target / store.RECORD_FILE).is_file() and (target / store.MODEL_FILE).is_file():
        return store.StoredModel(target), True
    name = f"lungblind-{key}"
    if not (store.model_dir(name) / store.RECORD_FILE).is_file():
        config = replace(
            TrainConfig.from_dict(record.training),
            dataset=str(record.dataset.get("name") or ""),
            epochs=epochs,
            early_stopping=None,
            name=name,
            group=None,  # never one of the audited model's seeds (eval --group)
            input="no-lungs",
            strategy="auto",
            precision="auto",  # the control need not match: stored float32 either way
        )
        if not config.dataset:
            raise DataError(f"model {record.id} does not record its dataset: no control possible")

        def report(_job: grid.Job, epoch: EpochReport) -> None:
            reporter.advance(CONTROL_TASK, epoch.epoch, epoch.epochs)

        reporter.start(CONTROL_TASK, total=epochs, unit="epochs")
        try:
            # A one-job grid: an interrupted control resumes from its run folder.
            job = grid.Job(name, config.to_dict(), config.seed)
            grid.run_grid([job], None, reporter, grid.GridHooks(on_epoch=report), task=None)
        except TrainingInterrupted as exc:
            raise AuditInterrupted(
                f"audit interrupted while training the lung-blind control (after "
                f"{exc.epochs_done} epoch(s)); rerun the same audit to continue it"
            ) from None
        finally:
            reporter.finish(CONTROL_TASK)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(store.model_dir(name), target)
    return store.StoredModel(target), False


# --- external sets ---------------------------------------------------------------------------
