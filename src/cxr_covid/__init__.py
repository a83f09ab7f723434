"""cxr-covid: reproduce and extend a CNN study on COVID-19 chest X-rays.

A research tool, not a diagnostic device. Importing this package must stay cheap: it never
imports TensorFlow, so `cxr-covid --help` answers instantly. The heavy parts live in modules
that import TensorFlow inside the functions that need them. The public Python API
(`load_model`, `list_models`, `list_datasets`, `train`, `evaluate`, `audit_model`: docs/api.md) is
imported on first use.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cxr_covid.api import (
        ImageResult,
        InvalidImageArray,
        Model,
        Predictions,
        audit_model,
        evaluate,
        list_datasets,
        list_models,
        load_model,
        train,
    )

from cxr_covid.about import DISCLAIMER, __version__

__all__ = [
    "DISCLAIMER",
    "ImageResult",
    "InvalidImageArray",
    "Model",
    "Predictions",
    "__version__",
    "audit_model",
    "evaluate",
    "list_datasets",
    "list_models",
    "load_model",
    "train",
]

_API = frozenset(__all__) - {"DISCLAIMER", "__version__"}


def __getattr__(name: str) -> Any:
    # Lazily, so `import cxr_covid` costs nothing until the API is used.
    if name in _API:
        from cxr_covid import api

        return getattr(api, name)
    raise AttributeError(f"module 'cxr_covid' has no attribute {name!r}")
