"""cxr-covid: reproduce and extend a CNN study on COVID-19 chest X-rays.

A research tool, not a diagnostic device. Importing this package must stay cheap: it never
imports TensorFlow, so `cxr-covid --help` answers instantly. The heavy parts live in modules
that import TensorFlow inside the functions that need it.
"""

__version__ = "0.1.0"

DISCLAIMER = (
    "Research tool, not a diagnostic device: its outputs must not be used to diagnose, "
    "treat or triage any patient."
)

__all__ = ["DISCLAIMER", "__version__"]
