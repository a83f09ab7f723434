"""Importing TensorFlow without its start-up noise.

TensorFlow's C++ runtime writes oneDNN, CUDA-stub and cuInit messages straight to file
descriptor 2 while it is imported and first asked for devices; TF_CPP_MIN_LOG_LEVEL no longer
silences them (they are logged before absl is initialised). The CLI imports TensorFlow once,
through here, with fd 2 pointed at /dev/null, so users see the tool's output and real errors
only. `CXR_COVID_TF_LOGS=1` keeps TensorFlow's messages for debugging.

The CLI does not import TensorFlow up front: `quiet_tensorflow_imports` makes whichever
import comes first (training, loading a model) the quiet one, so a command that stops at a
bad option or a missing file never pays TensorFlow's seconds of start-up.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from types import ModuleType
from typing import Any

TF_LOGS_ENV = "CXR_COVID_TF_LOGS"


def import_tensorflow_quietly() -> None:
    """Import TensorFlow and initialise its devices with its C++ start-up logs silenced."""
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with native_stderr_silenced():
        import tensorflow as tf

        tf.config.list_physical_devices()


def compile_once(function: Callable[..., Any], input_signature: Sequence[Any]) -> Any:
    """`tf.function(function)` with a fixed input signature, counted as its own function.

    TensorFlow's "N out of the last M calls to <function ...> triggered tf.function
    retracing" warning counts traces per *code object*: every model's step built from the same
    `def` shares one counter, so a process that scores six models (reproduce, the audit,
    `eval --group`) looks like one function retraced six times, although each model is traced
    exactly once (the callers cache the step per model). Wrapping the function in a
    `functools.partial` gives each compiled step its own counter; what is traced is unchanged.
    """
    import functools

    import tensorflow as tf

    return tf.function(functools.partial(function), input_signature=list(input_signature))


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null inside the block: what native code (TensorFlow's
    and LiteRT's C++ runtimes) writes there is dropped, while Python errors still raise.
    `CXR_COVID_TF_LOGS=1` keeps it, for debugging."""
    if os.environ.get(TF_LOGS_ENV):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class _QuietLoader(importlib.abc.Loader):
    """Runs TensorFlow's own loader with fd 2 silenced, then steps aside."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        module: ModuleType | None = self._loader.create_module(spec)
        return module

    def exec_module(self, module: ModuleType) -> None:
        # Put the real loader back first, so nothing later sees this wrapper.
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        with native_stderr_silenced():
            self._loader.exec_module(module)
            module.config.list_physical_devices()


class _QuietTensorFlowFinder(importlib.abc.MetaPathFinder):
    """Finds nothing itself: hands the first `import tensorflow` a silencing loader."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "tensorflow":
            return None
        _remove_finder()  # once only, and so that the search below finds the real spec
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _QuietLoader(spec.loader)
        return spec


def _remove_finder() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _QuietTensorFlowFinder)]


@contextlib.contextmanager
def quiet_tensorflow_imports() -> Iterator[None]:
    """Within the block, the first import of TensorFlow (if any) is silenced."""
    if "tensorflow" in sys.modules or os.environ.get(TF_LOGS_ENV):
        yield
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.meta_path.insert(0, _QuietTensorFlowFinder())
    try:
        yield
    finally:
        _remove_finder()
