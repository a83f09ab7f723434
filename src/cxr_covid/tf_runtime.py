"""Importing TensorFlow without its start-up noise.

TensorFlow's C++ runtime writes oneDNN, CUDA-stub and cuInit messages straight to file
descriptor 2 while it is imported and first asked for devices; TF_CPP_MIN_LOG_LEVEL no longer
silences them (they are logged before absl is initialised). The CLI imports TensorFlow once,
through here, with fd 2 pointed at /dev/null, so users see the tool's output and real errors
only. `CXR_COVID_TF_LOGS=1` keeps TensorFlow's messages for debugging.
"""

from __future__ import annotations

import os
import sys

TF_LOGS_ENV = "CXR_COVID_TF_LOGS"


def import_tensorflow_quietly() -> None:
    """Import TensorFlow and initialise its devices with its C++ start-up logs silenced."""
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if os.environ.get(TF_LOGS_ENV):
        import tensorflow  # noqa: F401

        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow as tf

        tf.config.list_physical_devices()
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
