"""MODEL_CARD.md from a model record, in the sections of Mitchell et al. 2019.

"Model Cards for Model Reporting" (Mitchell et al., FAT* 2019) asks for: model details,
intended use (and out-of-scope use), factors, metrics, training and evaluation data,
quantitative analyses, ethical considerations, and caveats. Everything figure-like comes from
the record; nothing is typed in by hand, so a card never claims more than was measured. Every
stored evaluation is listed with its counts and 95 % Wilson intervals. Record fields this module
does not know (subgroup analyses, audits, calibration added later) are rendered generically,
so the card never silently drops what a model carries.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from cxr_covid.about import DISCLAIMER, __version__
from cxr_covid.classes import display_name
from cxr_covid.evaluation.report import cell
from cxr_covid.models.records import SavedEvaluation
from cxr_covid.models.store import ModelRecord
from cxr_covid.sharing.card_sections import audit_lines, calibration_lines, provenance_lines
from cxr_covid.stats import proportion, proportion_of

CARD_FILE = "MODEL_CARD.md"
# Where dataset_info_for puts the dataset's collection and age-group counts (not in dataset.json).
PROVENANCE_KEY = "provenance_summary"
STUDY = (
    "Lázaro Herrasti and Barco Terrones (2020), *COVID-19 Detection from chest X-Ray images "
    "using Convolutional Neural Networks*"
)
MITCHELL = (
    "Mitchell et al. (2019), *Model Cards for Model Reporting*, FAT* '19, "
    "doi:10.1145/3287560.3287596"
)

# Record fields rendered in their own sections; anything else is shown under "Further
# analyses" as it is.
_KNOWN_FIELDS = {
    "id",
    "architecture",
    "classes",
    "preprocessing",
    "last_conv_layer",
    "created",
    "format",
    "dataset",
    "training",
    "history",
    "metrics",
    "evaluations",
    "versions",
    "sharing",
    "calibration",
    "ood",
    "operating_point",
    "added",
    "audits",
}
_TRAINING_KEYS = (
    "epochs",
    "epochs_run",
    "batch_size",
    "learning_rate",
    "optimizer",
    "loss",
    "seed",
    "augment",
    "keep",
    "device",
    "seconds",
)

LICENCES = [
    "COVID-19 Radiography Database (Kaggle, tawsifurrahman/covid19-radiography-database; "
    "Chowdhury et al. 2020, Rahman et al. 2021): used under the database's own terms on "
    "Kaggle; cite its papers. It gathers images from several sources, each under its own "
    "licence:",
    "  - Kermany et al. 2018 paediatric chest X-rays (Guangzhou; all viral-pneumonia and the "
    "first release's normal images): CC BY 4.0.",
    "  - Hannover Medical School COVID-19 image repository (Winther et al.): CC BY 3.0.",
    "  - Other COVID-19 sources (the Italian radiology society SIRM, Cohen et al.'s "
    "covid-chestxray-dataset, BIMCV, COVID-CXNet, Eurorad, articles) and RSNA Pneumonia "
    "Detection Challenge normals (current release): each under its own terms; the database's "
    "metadata workbooks give every image's source URL.",
]

CAVEATS = [
    "**Paediatric confounder.** All viral-pneumonia images (and, in the first release, all "
    "normal images) come from one paediatric collection (children aged 1-5, one hospital), "
    "while the COVID-19 images are adults from other sources. A model can learn age, "
    "hospital and scanner rather than disease: a baseline trained this way has been "
    "measured to call most adult normal X-rays COVID-19 (see docs/study.md; DeGrave et "
    "al. 2021, Maguolo & Nanni 2021, Roberts et al. 2021).",
    "**Tiny COVID-19 test set.** The study's split leaves 33 COVID-19 test images: an "
    "accuracy of 29/33 has a 95 % interval of about 73-95 %. Compare models by their "
    "intervals, not by their point estimates.",
    "**Same-database evaluation.** Test images come from the same database and sources as "
    "the training images; accuracy on other hospitals, populations or devices is unknown.",
    "**Grad-CAM maps** show what raised a class score, not why a patient is ill; they are "
    "a way to spot shortcuts (text markers, borders, age), not evidence of pathology.",
]


def render(record: ModelRecord, dataset_info: dict[str, Any] | None = None) -> str:
    """The card as Markdown. `dataset_info` is the dataset.json, when the data is here."""
    parts = [
        f"# Model card: {record.id}",
        "",
        f"> **{DISCLAIMER}**",
        "",
        f"Written by cxr-covid {__version__} from the model record, in the sections of {MITCHELL}.",
        "",
        *_details(record),
        *_intended_use(),
        *_training_data(record, dataset_info or {}),
        *_evaluation(record),
        *_decisions(record),
        *audit_lines(record),
        *_further(record),
        "## Ethical considerations and caveats",
        "",
        *(f"- {line}" for line in CAVEATS),
        "",
        "## Licences and attribution of the data",
        "",
        *(line if line.startswith("  ") else f"- {line}" for line in LICENCES),
        "",
        f"The model reproduces the networks of {STUDY}. The code is MIT-licensed; the "
        "weights were trained on the data above and inherit its terms of use.",
        "",
    ]
    return "\n".join(parts)


def _decisions(record: ModelRecord) -> list[str]:
    """Calibration, the out-of-distribution guard and the stored operating point: what turns
    this model's scores into what `predict` reports."""
    from cxr_covid.inference.scoring import describe

    lines = ["## Calibration, decisions and the out-of-distribution guard", ""]
    lines += [f"- {label.capitalize()}: {text}." for label, text in describe(record)]
    lines += [
        "- A guard flags inputs unlike the training X-rays (noise, photographs, blank or text "
        "images); it cannot catch a lateral film, a CT scout or an adult film from another "
        "hospital that merely looks typical (see docs/ood.md).",
        "",
    ]
    return lines


def _details(record: ModelRecord) -> list[str]:
    prep = record.prep
    lines = [
        "## Model details",
        "",
        f"- Id: `{record.id}`; created {record.created}.",
        f"- Architecture: `{record.architecture}` (a CNN trained from scratch, after {STUDY}).",
        "- Classes (output order): "
        + ", ".join(f"`{c}` ({display_name(c)})" for c in record.classes)
        + "; outputs are softmax probabilities.",
        f"- Input: {prep.image_size}x{prep.image_size} {prep.color.upper()}, resized with "
        f"Pillow's `{prep.resize}` filter; pixel values 0-255 (scaled by 1/255 inside the "
        "model).",
        f"- Grad-CAM layer: `{record.last_conv_layer}`.",
    ]
    lines += _members(record)
    if prep.normalize != "none":
        from cxr_covid.data.normalize import describe

        lines.append(f"- Intensity standardisation (`--normalize`): {describe(prep.normalize)}.")
    training = {k: record.training[k] for k in _TRAINING_KEYS if k in record.training}
    if training:
        lines.append(
            "- Training: " + ", ".join(f"{k} {_value(v)}" for k, v in training.items()) + "."
        )
    if record.versions:
        lines.append(
            "- Software: " + ", ".join(f"{k} {v}" for k, v in record.versions.items()) + "."
        )
    imported = record_sharing(record).get("imported_from")
    if isinstance(imported, dict):
        lines.append(
            f"- Imported from {imported.get('source', '?')} (sha256 "
            f"`{imported.get('sha256', '?')}`) on {imported.get('imported', '?')}."
        )
    return [*lines, ""]


def _members(record: ModelRecord) -> list[str]:
    """An ensemble's member models (`models ensemble`); nothing for a plain model."""
    if not record.members:
        return []
    lines = [
        f"- Ensemble: the mean of the softmax probabilities of {len(record.members)} models "
        "(Grad-CAM: the mean of their maps):"
    ]
    for member in record.members:
        seed = member.get("seed")
        accuracy = member.get("best_val_accuracy")
        lines.append(
            f"  - `{member.get('id')}` ({member.get('architecture')}"
            + (f", seed {seed}" if seed is not None else "")
            + (
                f", validation accuracy {100 * accuracy:.1f}%"
                if isinstance(accuracy, float)
                else ""
            )
            + ")"
        )
    return lines


def _intended_use() -> list[str]:
    return [
        "## Intended use",
        "",
        "- Research and teaching only: reproducing the study, comparing networks with honest "
        "intervals, and studying shortcut learning in chest X-ray classifiers.",
        "- Primary users: machine-learning and medical-imaging researchers.",
        "",
        "## Out-of-scope use",
        "",
        "- Any clinical use: diagnosis, triage, screening or treatment decisions for any "
        "patient. This is not a medical device and has not been validated as one.",
        "- Images unlike the training data: lateral views, CT, other populations (adults for "
        "viral pneumonia, other hospitals or devices), or other diseases: the model can only "
        "answer with one of its classes.",
        "",
    ]


def _training_data(record: ModelRecord, info: dict[str, Any]) -> list[str]:
    data = record.dataset
    lines = ["## Training data", ""]
    lines.append(f"- Dataset: `{data.get('name', '?')}`.")
    source = info.get("source")
    if isinstance(source, dict) and source:
        described = ", ".join(f"{k} {v}" for k, v in source.items())
        lines.append(f"- Source: {described}.")
    archive = info.get("archive")
    if isinstance(archive, dict) and archive.get("sha256"):
        lines.append(
            f"- Source archive: sha256 `{archive['sha256']}`, {archive.get('bytes', '?')} bytes."
        )
    for key, label in (("manifest_sha256", "Manifest sha256"), ("split_sha256", "Split sha256")):
        if data.get(key):
            lines.append(f"- {label}: `{data[key]}` (the exact images and their split).")
    split = info.get("split")
    if isinstance(split, dict) and split.get("fractions"):
        lines.append(
            f"- Split: fractions {split['fractions']} (train/val/test), seed "
            f"{split.get('seed', '?')}, stratified by class."
        )
    counts = info.get("counts")
    if isinstance(counts, dict) and counts:
        lines += ["", "| split | " + " | ".join(display_name(c) for c in record.classes) + " |"]
        lines.append("| --- |" + " ---: |" * len(record.classes))
        for split_name, by_class in counts.items():
            if isinstance(by_class, dict):
                row = " | ".join(str(by_class.get(c, 0)) for c in record.classes)
                lines.append(f"| {split_name} | {row} |")
        lines.append("")
    else:
        for key in ("train_images", "val_images", "augmented_train_images"):
            if key in data:
                lines.append(f"- {key.replace('_', ' ')}: {data[key]}.")
    lines += provenance_lines(record, info.get(PROVENANCE_KEY))
    return [*lines, ""]


def _evaluation(record: ModelRecord) -> list[str]:
    lines = ["## Evaluation results", ""]
    val = record.metrics.get("best_val_accuracy")
    val_n = int(record.dataset.get("val_images", 0) or 0)
    if isinstance(val, (int, float)):
        shown = cell(proportion_of(float(val), val_n)) if val_n else f"{100 * float(val):.2f}%"
        lines.append(
            f"- Validation accuracy at the kept epoch ({record.metrics.get('best_epoch', '?')}): "
            f"{shown} (used to choose the epoch, so optimistic)."
        )
    if not record.evaluations:
        lines += [
            "- No held-out evaluation is stored yet: run `cxr-covid eval` and write the card "
            "again.",
            "",
        ]
        return lines
    lines += ["Accuracies are shown as `rate (correct/n) [95 % Wilson interval]`.", ""]
    for number, evaluation in enumerate(record.evaluations, 1):
        lines += _one_evaluation(number, evaluation, record.classes)
    return lines


def _one_evaluation(number: int, evaluation: SavedEvaluation, classes: list[str]) -> list[str]:
    heading = f"### Evaluation {number}: {evaluation.where}"
    if evaluation.dataset:
        heading += f" (dataset `{evaluation.dataset}`, split `{evaluation.split or '?'}`)"
    lines = [heading, ""]
    if not evaluation.is_standard:
        # An evaluation kind this card does not know (subgroups, audits...): shown as it is.
        return [*lines, *_generic(evaluation.to_dict()), ""]
    n = evaluation.n or 0
    total = (
        proportion(evaluation.correct, n)
        if evaluation.correct is not None
        else proportion_of(evaluation.accuracy or 0.0, n)
    )
    lines.append(f"- Created {evaluation.created or '?'}; {n} images.")
    lines.append(f"- Accuracy: {cell(total)}.")
    for label, value in (
        ("Balanced accuracy", evaluation.balanced_accuracy),
        ("Macro f1", evaluation.macro_f1),
    ):
        if value is not None:
            lines.append(f"- {label}: {value:.3f}.")
    if evaluation.failed:
        lines.append(f"- Images that could not be read: {evaluation.failed}.")
    per_class = evaluation.per_class
    if per_class:
        lines += ["", "| class | accuracy (recall) | AUC |", "| --- | --- | ---: |"]
        for cls in [c for c in classes if c in per_class] + [
            c for c in per_class if c not in classes
        ]:
            figures = per_class[cls]
            p = (
                proportion(figures.correct, figures.n)
                if figures.correct is not None
                else proportion_of(figures.accuracy or 0.0, figures.n)
            )
            auc_text = f"{figures.auc:.3f}" if figures.auc is not None else "n/a"
            lines.append(f"| {display_name(cls)} | {cell(p)} | {auc_text} |")
    matrix = evaluation.confusion_matrix
    if matrix:
        lines += ["", "Confusion matrix (rows: true class, columns: predicted):", ""]
        lines.append("| true \\ predicted | " + " | ".join(map(display_name, classes)) + " |")
        lines.append("| --- |" + " ---: |" * len(classes))
        for cls, row in zip(classes, matrix, strict=False):
            lines.append(f"| {display_name(cls)} | " + " | ".join(map(str, row)) + " |")
    if evaluation.extra:
        calibration, rest = calibration_lines(evaluation.extra)
        lines += ["", *calibration, *(_generic(rest) if rest else [])]
    return [*lines, ""]


def _further(record: ModelRecord) -> list[str]:
    extra = {
        k: v
        for k, v in record.to_dict().items()
        if k not in _KNOWN_FIELDS and v not in (None, {}, [])
    }
    if not extra:
        return []
    lines = ["## Further analyses", ""]
    for key, value in extra.items():
        lines += [f"### {key.replace('_', ' ').capitalize()}", "", *_generic(value), ""]
    return lines


def _generic(value: Any, indent: str = "") -> list[str]:
    """A record field this card has no section for, as nested bullet lists (JSON only for
    lists of objects, which have no plain-text shape)."""
    if isinstance(value, dict):
        lines = []
        for k, v in value.items():
            if isinstance(v, dict) and v:
                lines += [f"{indent}- {k}:", *_generic(v, indent + "  ")]
            elif isinstance(v, list) and any(isinstance(x, (dict, list)) for x in v):
                lines += [f"{indent}- {k}:", *_json(v, indent + "  ")]
            elif isinstance(v, list):
                lines.append(f"{indent}- {k}: {', '.join(_value(x) for x in v) or 'none'}")
            else:
                lines.append(f"{indent}- {k}: {_value(v)}")
        return lines
    return _json(value, indent)


def _json(value: Any, indent: str = "") -> list[str]:
    text = json.dumps(value, indent=2, default=str, ensure_ascii=False)
    return [f"{indent}{line}" for line in ["```json", *text.splitlines(), "```"]]


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def record_sharing(record: ModelRecord) -> dict[str, Any]:
    sharing = getattr(record, "sharing", None)
    return sharing if isinstance(sharing, dict) else {}


def dataset_info_for(record: ModelRecord) -> dict[str, Any]:
    """The model's dataset.json when that dataset is in the home (else empty)."""
    from cxr_covid.data.dataset import Dataset, dataset_path
    from cxr_covid.errors import CxrCovidError

    name = record.dataset.get("name")
    if not isinstance(name, str) or not name:
        return {}
    try:
        info = Dataset(dataset_path(name)).info()
    except CxrCovidError:
        return {}
    # Only the very split the model was trained on: a dataset re-made under the same name
    # would describe other images.
    if info.get("split_sha256") != record.dataset.get("split_sha256"):
        return {}
    from cxr_covid.data.confounding import summarize

    with contextlib.suppress(CxrCovidError, OSError):
        info[PROVENANCE_KEY] = summarize(Dataset(dataset_path(name)).rows()).to_dict()
    return info
