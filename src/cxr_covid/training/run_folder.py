"""The run folder `<home>/runs/<id>/`: the last completed epoch of an unfinished training run.

It holds the options (config.json), the loop's state (state.json), the checkpoint with its
optimizer and RNG state, and the best weights so far; it is replaced atomically after every
epoch, so Ctrl-C or a crash leaves one complete epoch to resume from.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cxr_covid import atomic, paths
from cxr_covid.data.dataset import check_name
from cxr_covid.errors import ModelError, UsageError
from cxr_covid.models import store
from cxr_covid.models.records import HISTORY_COLUMNS
from cxr_covid.training import resume_state
from cxr_covid.training.config import TrainConfig

CONFIG_FILE = "config.json"
STATE_FILE = "state.json"
CHECKPOINT_FILE = "checkpoint.keras"
BEST_FILE = "best-weights.npz"
RNG_FILE = "rng-state.npz"  # the layers' seed generators: see cxr_covid.training.resume_state


# --- run folders --------------------------------------------------------------------------


def run_dir(run_id: str) -> Path:
    return paths.runs_dir() / check_name(run_id)


def list_runs() -> list[str]:
    root = paths.runs_dir()
    if not root.is_dir():
        return []
    return sorted(
        p.name for p in root.iterdir() if not atomic.is_temporary(p) and (p / STATE_FILE).is_file()
    )


@dataclass
class RunState:
    """What a checkpoint holds besides the weights; state.json."""

    epochs_done: int = 0
    history: dict[str, list[float]] = field(
        default_factory=lambda: {k: [] for k in HISTORY_COLUMNS}
    )
    best_epoch: int = 0
    best_val_accuracy: float = -1.0
    best_val_loss: float = float("inf")
    wait: int = 0  # epochs since the last improvement (early stopping)
    train_seconds: float = 0.0  # time in the training phase of the epochs (not validation)
    timed_images: int = 0  # images processed in `train_seconds`
    total_seconds: float = 0.0
    resumed: int = 0
    manifest_sha256: str = ""
    started: str = ""
    precision: str = ""  # the Keras policy the run's epochs use (a resume keeps it)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunState:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def write_run(
    target: Path,
    run_id: str,
    config: TrainConfig,
    state: RunState,
    model: Any | None,
    best_weights: list[np.ndarray] | None,
) -> None:
    """Replace the whole run folder atomically: it always holds one complete epoch."""
    with atomic.building_dir(target, replace=True) as tmp:
        atomic.write_json(tmp / CONFIG_FILE, {"run_id": run_id, "config": config.to_dict()})
        if model is not None:
            model.save(tmp / CHECKPOINT_FILE)
            resume_state.save_rng_state(model, tmp / RNG_FILE)
        if best_weights is not None:
            with (tmp / BEST_FILE).open("wb") as handle:
                np.savez(handle, *best_weights)
        atomic.write_json(tmp / STATE_FILE, asdict(state))


def run_config(run_id: str) -> TrainConfig:
    """The options an interrupted run was started with."""
    return read_run(run_id)[0]


def read_run(run_id: str) -> tuple[TrainConfig, RunState, Path]:
    folder = run_dir(run_id)
    try:
        config_data = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        state_data = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
        config = TrainConfig.from_dict(config_data["config"])
        state = RunState.from_dict(state_data)
    except FileNotFoundError as exc:
        raise ModelError(
            f"{folder}: not a resumable training run ({exc.filename} missing)"
        ) from exc
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise ModelError(f"{folder}: corrupt training run ({exc})") from exc
    problem = _state_problem(state)
    if problem:
        raise ModelError(f"{folder}: corrupt training run ({problem})")
    return config, state, folder


def _state_problem(state: RunState) -> str | None:
    """Why a state.json read from disk cannot be trusted (hand-edited or damaged), or None."""
    for name in ("epochs_done", "best_epoch", "wait", "resumed", "timed_images"):
        value = getattr(state, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return f"{name} should be a whole number of at least 0, not {value!r}"
    for name in ("best_val_accuracy", "best_val_loss", "train_seconds", "total_seconds"):
        if isinstance(getattr(state, name), bool) or not isinstance(
            getattr(state, name), int | float
        ):
            return f"{name} should be a number, not {getattr(state, name)!r}"
    if not isinstance(state.history, dict) or not all(
        isinstance(v, list) for v in state.history.values()
    ):
        return "history should map each metric to a list"
    return None


# --- the training loop --------------------------------------------------------------------


def drop_unstarted_run(run_id: str) -> bool:
    """Remove a new run's folder if no epoch reached it: a failure before training (a bad
    option, a broken image, Ctrl-C) leaves nothing that would block the name."""
    folder = run_dir(run_id)
    try:
        state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
        unstarted = isinstance(state, dict) and state.get("epochs_done") == 0
    except (OSError, ValueError):
        unstarted = False
    if unstarted:
        shutil.rmtree(folder, ignore_errors=True)
    return unstarted


def _resume_hint(run_id: str) -> str:
    return f"cannot resume {run_id!r}: delete {run_dir(run_id)} and train again"


def load_checkpoint(checkpoint: Path, run_id: str) -> Any:
    """The checkpoint, loaded with safe_mode; a damaged or hostile one is a ModelError."""
    try:
        return store.load_keras_file(checkpoint, compile=True)
    except ModelError as exc:
        raise ModelError(f"{exc} ({_resume_hint(run_id)})") from exc


def load_best_weights(path: Path, model: Any, run_id: str) -> list[np.ndarray]:
    """best.npz (plain arrays, never pickles), checked against the model's weights."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            weights = [stored[f"arr_{i}"] for i in range(len(stored.files))]
    except Exception as exc:
        raise ModelError(
            f"{path}: corrupt or truncated best weights ({type(exc).__name__}: {exc}; "
            f"{_resume_hint(run_id)})"
        ) from exc
    shapes = [tuple(w.shape) for w in model.get_weights()]
    if [tuple(w.shape) for w in weights] != shapes:
        raise ModelError(f"{path}: best weights do not fit the checkpoint ({_resume_hint(run_id)})")
    return weights


def check_name_free(run_id: str, *, resuming: bool = True) -> None:
    """The model id must still be free: checked before training and again before saving,
    since another command may save a model of that name while this one trains."""
    if not store.model_dir(run_id).exists():
        return
    if not resuming:
        raise ModelError(f"a model named {run_id!r} already exists (use another --name)")
    raise ModelError(
        f"a model named {run_id!r} already exists; the run is kept: finish it under another "
        f"name with `cxr-covid train --resume {run_id} --name NEW`"
    )


def rename_run(run_id: str, name: str) -> str:
    """Move the run folder to `name`, so the run continues (and saves) under that id."""
    check_name(name)
    check_name_free(name, resuming=False)
    target = run_dir(name)
    if target.exists():
        raise UsageError(
            f"an interrupted run named {name!r} exists too: resume it, or choose another --name"
        )
    run_dir(run_id).rename(target)
    return name
