"""Ranges of the numeric options: a value outside them is a usage error (exit 2) before
anything is read, built or written, never a traceback from deep inside a library.

The bounds are policy, documented in docs/commands/*.md: wide enough for any real use of
this study's recipe, narrow enough that a typo (an extra digit, a pasted number) cannot
start a run that would fill the disk or never end.
"""

from __future__ import annotations

from cxr_covid.models import MIN_IMAGE_SIZE

MAX_EPOCHS = 10_000  # the study trains 30
MAX_BATCH_SIZE = 4_096  # the study uses 32
MAX_IMAGE_SIZE = 1_024  # the study uses 224; the Kaggle images are 299 px
MAX_LEARNING_RATE = 1.0  # Adam; the study uses 1e-3
MAX_AUGMENT_FACTOR = 100  # the study uses 5
MAX_BOOTSTRAP = 100_000  # the default is 1,000
# Seeds feed NumPy's legacy generator (non-negative only) and scikit-learn (below 2**32).
MAX_SEED = 2**32 - 1
# --adversarial-source's gradient-reversal weight: above 0; past a few the reversed
# gradient swamps the classification loss and training diverges.
DEFAULT_ADVERSARIAL_WEIGHT = 0.3
MAX_ADVERSARIAL_WEIGHT = 10.0

__all__ = [
    "DEFAULT_ADVERSARIAL_WEIGHT",
    "MAX_ADVERSARIAL_WEIGHT",
    "MAX_AUGMENT_FACTOR",
    "MAX_BATCH_SIZE",
    "MAX_BOOTSTRAP",
    "MAX_EPOCHS",
    "MAX_IMAGE_SIZE",
    "MAX_LEARNING_RATE",
    "MAX_SEED",
    "MIN_IMAGE_SIZE",
]
