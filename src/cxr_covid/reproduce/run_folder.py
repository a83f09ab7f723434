"""The run folder `<home>/reproduce/<run>/`: `state.json` (the settings and each finished
step, rewritten atomically), its default place, and the names of the models it trains."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

from cxr_covid import atomic, paths, study
from cxr_covid.errors import DataError, UsageError
from cxr_covid.models import store

STATE_FILE = "state.json"
STATE_FORMAT = 1


class RunState:
    """`state.json`: the settings a run was started with and each finished step."""

    def __init__(self, root: Path, data: dict[str, Any]) -> None:
        self.root = root
        self.data = data

    @property
    def path(self) -> Path:
        return self.root / STATE_FILE

    @classmethod
    def open(cls, root: Path, settings: dict[str, Any], restart: bool) -> RunState:
        path = root / STATE_FILE
        if path.is_file() and not restart:
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise DataError(f"{path}: unreadable run state ({exc}); use --restart") from exc
            if data.get("settings") != settings:
                changed = sorted(
                    k
                    for k in set(settings) | set(data.get("settings", {}))
                    if settings.get(k) != data.get("settings", {}).get(k)
                )
                raise UsageError(
                    f"{root} holds a run started with other settings (differs in: "
                    f"{', '.join(changed)}); choose another --out, or --restart to start over"
                )
            return cls(root, data)
        data = {
            "format": STATE_FORMAT,
            "run": uuid.uuid4().hex[:8],  # names this run's models; new on --restart
            "settings": settings,
            "started": store.now_iso(),
            "steps": {},
        }
        state = cls(root, data)
        if root.is_dir():  # a new run in a new folder is saved by its first finished step
            state.save()
        return state

    def step(self, name: str) -> dict[str, Any] | None:
        found = self.data["steps"].get(name)
        return found if isinstance(found, dict) else None

    def finish(self, name: str, **info: Any) -> None:
        self.data["steps"][name] = {**info, "finished": store.now_iso()}
        self.save()

    def save(self) -> None:
        self.data["updated"] = store.now_iso()
        atomic.write_json(self.path, self.data)


# --- steps ----------------------------------------------------------------------------------


def default_run_dir(settings: dict[str, Any], preset: study.Preset) -> Path:
    name = f"{settings['preset']}-{settings['dataset']}"
    if (
        settings["image_size"] != preset.image_size
        or settings["epochs"] != preset.epochs
        or settings["batch_size"] != preset.batch_size
        or settings["seed"] != preset.seed
    ):
        name += (
            f"-{settings['image_size']}px-{settings['epochs']}ep-b{settings['batch_size']}"
            f"-s{settings['seed']}"
        )
    return paths.reproduce_dir() / name


def model_name(state: RunState, key: str, seed: int | None = None) -> str:
    """A model id unique to this run, readable in `models list`.

    The run's random id is part of it so that `--restart` trains new models instead of
    adopting the previous run's. Seeds after the first (`--seeds`) add `-s<seed>`."""
    return f"{key}-{group_name(state)}{seed_suffix(state, seed)}"


def group_name(state: RunState) -> str:
    """The group its models record (`cxr-covid eval --group NAME`): `<preset>-<run id>`."""
    run = (
        state.data.get("run")
        or hashlib.sha256(str(state.root.resolve()).encode("utf-8")).hexdigest()[:8]
    )
    return f"{state.data['settings']['preset']}-{run}"


def seed_suffix(state: RunState, seed: int | None) -> str:
    """'' for the run's own --seed (so `--seeds 1` is the run it always was), else -s<seed>."""
    return "" if seed is None or seed == state.data["settings"]["seed"] else f"-s{seed}"


def train_step(state: RunState, key: str, seed: int | None) -> str:
    suffix = seed_suffix(state, seed)
    return f"train:{key}" + (f"@{suffix[2:]}" if suffix else "")
