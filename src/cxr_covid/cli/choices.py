"""The closed sets of option values, as types Typer turns into real choices.

`--help` then lists them (`[baseline|inception|inception-nb]` instead of `<str>`), shell
completion offers them, and a wrong value is refused while parsing, before TensorFlow loads.
Each set has one home in the core (named beside it); tests/cli/test_interface_words.py checks
that every Literal here still equals its home, so a new architecture or format cannot be
forgotten here.
"""

from __future__ import annotations

from typing import Literal

# cxr_covid.models (the registered built-in architectures)
Arch = Literal["baseline", "inception", "inception-nb"]
# cxr_covid.training.distribute.STRATEGIES / cxr_covid.training.precision.PRECISIONS
Strategy = Literal["auto", "one-device", "mirrored", "multi-worker"]
Precision = Literal["auto", "float32", "bfloat16", "float16", "mixed"]
# cxr_covid.data.images.RESIZE_METHODS
Resize = Literal["nearest", "bilinear", "bicubic", "area", "lanczos"]
# cxr_covid.data.lungs.INPUTS
InputView = Literal["full", "lungs", "no-lungs"]
# cxr_covid.data.normalize.NORMALIZE_MODES
Normalize = Literal["none", "equalize", "clahe"]
# cxr_covid.data.lungs.FILLS
Fill = Literal["mean", "blur", "black"]
# cxr_covid.evaluation.testsets.EVAL_SPLITS
EvalSplit = Literal["test", "val", "train"]
# cxr_covid.study.PRESETS
Preset = Literal["paper", "quick", "robust"]
# cxr_covid.inference.predict.FORMATS
PredictFormat = Literal["csv", "jsonl"]
# cxr_covid.sharing.export.FORMATS
ExportFormat = Literal["savedmodel", "onnx", "litert"]
