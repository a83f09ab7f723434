"""The audit's verdict in words: how much of the accuracy the lung-blind control and the
origin-only view explain."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from cxr_covid import classes, stats
from cxr_covid.audit.results import AttentionResult, ControlResult, ExternalResult, ViewResult


def _pct(x: float) -> str:
    from cxr_covid.text import percent

    return percent(x, 0)


def _ci(p: stats.Proportion) -> str:
    return f"{_pct(p.value)} [{_pct(p.low)}-{_pct(p.high)}]"


def verdict(
    full: ViewResult,
    hidden: ViewResult,
    only: ViewResult,
    control: ControlResult | None,
    attention: AttentionResult | None,
    external: Sequence[ExternalResult],
    chance: float,
    origin_only: ViewResult | None = None,
) -> tuple[str, str, str]:
    """(verdict in plain words with the numbers, what it rests on, shortcut level)."""
    sentences: list[str] = []
    level = "unknown"
    base = full.accuracy.value
    if control is not None:
        acc = control.view.accuracy
        above = (acc.value - chance) / (base - chance) if base > chance else math.nan
        if acc.low <= chance:
            level = "none"
            words = "its accuracy is not distinguishable from chance: no shortcut was found"
        elif math.isfinite(above) and above >= 0.75:
            level = "strong"
            words = "the dataset carries strong shortcuts"
        elif math.isfinite(above) and above >= 0.4:
            level = "moderate"
            words = "the dataset carries substantial shortcuts"
        else:
            level = "weak"
            words = "the dataset carries some shortcut signal"
        sentences.append(
            f"The model reaches {_ci(full.accuracy)} test accuracy; a lung-blind model of the "
            f"same recipe ({control.epochs} epoch{'s' if control.epochs > 1 else ''}, lung field "
            "hidden in training and test) "
            f"reaches {_ci(acc)} against {_pct(chance)} chance: {words}."
        )
        basis = (
            "the lung-blind control (accuracy of a model that never saw the lung field), "
            "with the masked views, attention and external sets as supporting evidence"
        )
    else:
        basis = (
            "the control was skipped (--no-control): this verdict rests only on the masked "
            "views, attention and external sets, which cannot separate a shortcut from a "
            "model confused by an unfamiliar image; run the audit with the control"
        )
        sentences.append(f"The model reaches {_ci(full.accuracy)} test accuracy.")
    if origin_only is not None:
        sentences.append(_origin_sentence(origin_only, control, chance))
    for view in (hidden, only):
        if view.collapsed:
            top = max(view.predicted, key=lambda c: view.predicted[c])
            sentences.append(
                f"With {view.view} it calls {view.predicted[top]} of {view.accuracy.n} images "
                f"{classes.display_name(top)} ({_ci(view.accuracy)}): that view is outside what "
                "it knows and says little either way."
            )
        else:
            sentences.append(f"With {view.view} it keeps {_ci(view.accuracy)} accuracy.")
    if control is None and not hidden.collapsed and hidden.accuracy.low > chance:
        level = "likely"
        sentences.append(
            "Accuracy above chance with the lungs hidden suggests the model uses "
            "something outside the lungs."
        )
    if attention is not None and attention.per_image:
        sentences.append(
            f"A median {_pct(attention.median())} of its Grad-CAM mass lies inside the lung "
            f"field (uniform attention would give {_pct(attention.field_area)})."
        )
    for ext in external:
        worst = min(ext.difference.items(), key=lambda kv: kv[1][0], default=None)
        if worst is None:
            continue
        cls, (d, lo, hi) = worst
        sentences.append(
            f"On {Path(ext.folder).name} ({ext.images} images) it recognises "
            f"{_ci(ext.per_class[cls])} of {classes.display_name(cls)}, "
            f"{100 * abs(d):.0f} points {'below' if d < 0 else 'above'} its internal recall "
            f"(95 % interval of the difference {100 * lo:+.0f} to {100 * hi:+.0f} points)."
        )
    return " ".join(sentences), basis, level


def _origin_sentence(origin: ViewResult, control: ControlResult | None, chance: float) -> str:
    words = (
        f"A rule that sees no pixel, only where each image comes from (its collection and age "
        f"group, class by majority in the training split), scores {_ci(origin.accuracy)}"
    )
    if origin.accuracy.low <= chance:
        return words + ": the images' origins alone do not give the classes away."
    words += f" against {_pct(chance)} chance: the images' origins alone give much away"
    if control is not None and control.view.accuracy.high >= origin.accuracy.value:
        words += (
            ", and the lung-blind model's accuracy is within reach of it: it may have learnt "
            "little beyond where each image comes from"
        )
    return words + "."


# --- the audit -------------------------------------------------------------------------------
