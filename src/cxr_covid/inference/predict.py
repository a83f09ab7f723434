"""`predict` as a library call: files in, one CSV or JSON-lines row per file out, streamed.

Rows are written as they are produced, a batch at a time: each batch is formatted into one
string, written, flushed and fsync-ed, so a crash or Ctrl-C keeps every finished row and
never leaves a half row behind a complete one. `resume` reads what an earlier run wrote
(dropping a torn last line, if a hard kill left one) and skips those inputs.

Columns, the same in CSV and JSON lines and the same from run to run (only the `p_<class>`
columns follow the model's classes): path, predicted_class (the argmax), p_<class> for every
class of the model (in the model's order; calibrated when the model is, see `calibration`),
decision (the decided class), decision_rule (`argmax`, or e.g. `covid>=0.312` for a stored
operating point or --threshold: that class when its probability reaches the threshold, else
the argmax of the others), true_class (the class its folder names, `covid/x.png`; empty
otherwise), ood (true when the input does not look like the model's training images),
ood_score (above 1 means flagged), calibration ("calibrated (temperature T)" or
"uncalibrated"), model, error. A file that cannot be read has an empty prediction and its
reason in `error`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from cxr_covid import atomic, csv_safe
from cxr_covid.about import install_hint
from cxr_covid.classes import canonical
from cxr_covid.data.images import DICOM_SUFFIXES, dicom_available
from cxr_covid.errors import DependencyError, UsageError
from cxr_covid.inference.batches import Prediction, predict_paths
from cxr_covid.inference.calibration import Calibration
from cxr_covid.inference.ood import FLAG_ABOVE
from cxr_covid.inference.operating_point import (
    ARGMAX_RULE,
    OperatingPoint,
    decide,
    parse_threshold,
    rule_text,
)
from cxr_covid.inference.scoring import Scorer, probabilities_label
from cxr_covid.models.store import ModelRecord, StoredModel
from cxr_covid.progress import NULL, Reporter
from cxr_covid.text import escape_name

FORMATS = ("csv", "jsonl")
STDOUT = "-"

# (done, total) after each batch; `done` counts rows written in this run.
PREDICT_TASK = "predict"  # the progress task (cxr_covid.progress)


def columns(classes: Sequence[str]) -> list[str]:
    """The row's keys: fixed, whatever the decision rule or the inputs."""
    return [
        "path",
        "predicted_class",
        *(f"p_{c}" for c in classes),
        "decision",
        "decision_rule",
        "true_class",
        "ood",
        "ood_score",
        "calibration",
        "model",
        "error",
    ]


def infer_format(out: str, fmt: str | None) -> str:
    if fmt:
        if fmt not in FORMATS:
            raise UsageError(f"unknown format {fmt!r} (choose from: {', '.join(FORMATS)})")
        return fmt
    return "jsonl" if out.lower().endswith((".jsonl", ".ndjson")) else "csv"


def path_key(path: str | Path) -> str:
    """How `resume` recognises an input: its absolute, normalised path, escaped as the
    results file writes it (a name that is not UTF-8)."""
    return os.path.normcase(os.path.abspath(escape_name(str(path))))


@dataclass
class PredictSummary:
    model_id: str
    classes: list[str]
    out: str
    inputs: int = 0  # files named by the user (after expanding folders and globs)
    skipped: int = 0  # already in the output (resume)
    predicted: int = 0
    failed: int = 0
    counts: dict[str, int] = field(default_factory=dict)  # predicted class -> images
    decisions: dict[str, int] = field(default_factory=dict)  # decided class -> images
    decision_rule: str = ARGMAX_RULE
    calibration: str = "uncalibrated"
    ood_flagged: int = 0
    ood_checked: bool = False  # False: the model has no guard (older model)
    first_errors: list[str] = field(default_factory=list)  # a few, for the summary
    seconds: float = 0.0

    @property
    def written(self) -> int:
        return self.predicted + self.failed

    @property
    def images_per_second(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0


class RowWriter:
    """Formats predictions as CSV or JSON lines and appends them durably, a batch at a time."""

    def __init__(
        self,
        stream: IO[str],
        fmt: str,
        classes: Sequence[str],
        model_id: str,
        *,
        durable: bool,
        decision: tuple[int, float] | None = None,
        calibration: str = "uncalibrated",
    ) -> None:
        self.stream = stream
        self.fmt = fmt
        self.classes = list(classes)
        self.model_id = model_id
        self.durable = durable
        self.decision = decision  # (class index, threshold); None: the argmax
        self.rule = rule_text(*self._rule_parts())
        self.calibration = calibration
        self.columns = columns(classes)

    def _rule_parts(self) -> tuple[str | None, float | None]:
        if self.decision is None:
            return None, None
        return self.classes[self.decision[0]], self.decision[1]

    def decided(self, probabilities: np.ndarray) -> str:
        if self.decision is None:
            return self.classes[int(probabilities.argmax())]
        index, threshold = self.decision
        return self.classes[int(decide(probabilities[None], index, threshold)[0])]

    def header(self) -> None:
        if self.fmt == "csv":
            self._emit(csv_safe.to_text([self.columns]))

    def row(self, prediction: Prediction) -> dict[str, Any]:
        probs = prediction.probabilities
        row: dict[str, Any] = {"path": escape_name(str(prediction.path))}
        if probs is None:
            row["predicted_class"] = None
            row.update({f"p_{c}": None for c in self.classes})
            row["decision"] = None
        else:
            row["predicted_class"] = self.classes[int(probs.argmax())]
            row.update({f"p_{c}": float(p) for c, p in zip(self.classes, probs, strict=True)})
            row["decision"] = self.decided(probs)
        row["decision_rule"] = self.rule
        row["true_class"] = true_class(prediction.path, self.classes)
        score = prediction.ood_score
        row["ood"] = None if score is None else bool(score > FLAG_ABOVE)
        row["ood_score"] = score
        row["calibration"] = self.calibration if probs is not None else None
        row["model"] = self.model_id
        row["error"] = None if prediction.error is None else escape_name(prediction.error)
        return row

    def write(self, predictions: Sequence[Prediction]) -> None:
        if not predictions:
            return
        rows = [self.row(p) for p in predictions]
        if self.fmt == "jsonl":
            text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        else:
            buffer = io.StringIO()
            writer = csv_safe.SafeWriter(buffer)  # file names may look like formulas
            for r in rows:
                writer.writerow([_csv_cell(r[c]) for c in self.columns])
            text = buffer.getvalue()
        self._emit(text)

    def _emit(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()
        if self.durable:
            os.fsync(self.stream.fileno())


def true_class(path: str | Path, classes: Sequence[str]) -> str | None:
    """The class an input's folder names (`covid/x.png`, `COVID-19/x.png`), when it is one of
    the model's classes; None otherwise (a plain folder of images to classify)."""
    cls = canonical(Path(path).parent.name)
    return cls if cls in classes else None


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    # float32 probabilities round-trip exactly with 9 significant digits.
    return f"{value:.9g}" if isinstance(value, float) else str(value)


def read_existing(
    path: Path, fmt: str, classes: Sequence[str], model_id: str, rule: str = ARGMAX_RULE
) -> set[str]:
    """Inputs an earlier run already wrote to `path` (as `path_key`s), for `resume`.

    A torn last line (the process was killed while writing) is cut off first, so appending
    continues from the last complete row. Raises UsageError when the file was written for
    another model or class list: mixing them in one table would mislead.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return set()
    if raw and not raw.endswith(b"\n"):
        keep = raw.rfind(b"\n") + 1
        with open(path, "r+b") as handle:
            handle.truncate(keep)
        raw = raw[:keep]
    text = raw.decode("utf-8", errors="strict") if raw else ""
    if not text.strip():
        return set()
    done: set[str] = set()
    if fmt == "csv":
        reader = iter(csv_safe.read_rows(text))
        header = next(reader, [])
        if header != columns(classes):
            raise UsageError(
                f"{path}: its columns ({', '.join(header)}) are not this model's "
                f"({', '.join(columns(classes))}); write to another file"
            )
        records = [dict(zip(header, r, strict=False)) for r in reader if r]
    else:
        try:
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path}: not a JSON-lines results file ({exc})") from exc
    for record in records:
        if record.get("model") != model_id:
            raise UsageError(
                f"{path} holds predictions of model {record.get('model')!r}, not "
                f"{model_id!r}: resume with the same --model, or write to another file"
            )
        if record.get("decision_rule") != rule:
            raise UsageError(
                f"{path} holds decisions made by rule {record.get('decision_rule')!r}, not "
                f"{rule!r}: resume with the same --threshold, or write to another file"
            )
        done.add(path_key(record.get("path", "")))
    return done


def check_dicom_support(paths: Sequence[Path]) -> None:
    """Fail before any work when DICOM files are named but the `dicom` extra is missing."""
    if any(p.suffix.lower() in DICOM_SUFFIXES for p in paths) and not dicom_available():
        raise DependencyError(
            "these inputs include DICOM files, which need the optional extra: "
            + install_hint("dicom")
        )


def predict_to_file(
    paths: Sequence[Path],
    stored: StoredModel,
    out: str,
    *,
    fmt: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    batch_size: int = 32,
    reporter: Reporter = NULL,
    threshold: str | None = None,
) -> PredictSummary:
    """Predict every file in `paths` with `stored`, writing one row each to `out` (or "-"
    for stdout). Returns the summary; the caller decides what a failed input means.

    The decision column follows `threshold` ("covid=0.3") when given, else the operating
    point stored in the record (`eval --save-operating-point`), else the argmax."""
    if batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    if resume and overwrite:
        # One keeps the rows already written, the other throws them away: refuse to guess.
        raise UsageError("--resume and --overwrite exclude each other (keep the rows, or not)")
    fmt = infer_format(out, fmt)
    record: ModelRecord = stored.record()
    decision = decision_rule(record, threshold)
    rule = rule_text(record.classes[decision[0]], decision[1]) if decision else ARGMAX_RULE
    to_stdout = out == STDOUT
    if to_stdout and resume:
        raise UsageError("--resume needs an output file, not stdout")
    out_path = None if to_stdout else Path(out).expanduser()
    if out_path is not None:
        if out_path.is_dir():
            raise UsageError(f"{out_path} is a folder; --out names the results file")
        if out_path.exists() and out_path.stat().st_size > 0 and not (resume or overwrite):
            raise UsageError(
                f"{out_path} already exists: add --resume to continue it, "
                "or --overwrite to start again"
            )
    check_dicom_support(paths)

    done = (
        read_existing(out_path, fmt, record.classes, record.id, rule)
        if out_path is not None and resume
        else set()
    )
    todo = [p for p in paths if path_key(p) not in done] if done else list(paths)
    summary = PredictSummary(record.id, list(record.classes), out, inputs=len(paths))
    summary.skipped = len(paths) - len(todo)
    summary.counts = dict.fromkeys(record.classes, 0)
    summary.decisions = dict.fromkeys(record.classes, 0)
    summary.decision_rule = rule
    summary.calibration = probabilities_label(Calibration.from_record(record.calibration or None))
    summary.ood_checked = bool(record.ood)
    model = stored.load() if todo else None
    scorer = Scorer(model, record) if model is not None else None
    if scorer is not None:
        # Trace the compiled step now, so the rate shown is the steady one, not the set-up.
        size = record.prep.image_size
        scorer(np.zeros((1, size, size, 3), np.uint8))
        summary.ood_checked = scorer.guard is not None
    if summary.skipped:
        reporter.message(f"resume: {summary.skipped} input(s) already in {out}, skipped")
    # Started after loading, so a progress bar's rate counts images only.
    reporter.start(PREDICT_TASK, total=len(todo), unit="img")
    start = time.perf_counter()

    def write_rows(stream: IO[str], durable: bool, header: bool) -> None:
        _write_all(
            stream,
            durable,
            header,
            todo,
            scorer,
            record,
            fmt,
            batch_size,
            summary,
            reporter,
            decision,
        )

    if out_path is None:
        write_rows(sys.stdout, False, True)
    else:
        _write_file(out_path, resume, summary, write_rows)
    reporter.finish(PREDICT_TASK)
    summary.seconds = time.perf_counter() - start
    return summary


def _write_file(
    out_path: Path,
    resume: bool,
    summary: PredictSummary,
    write_rows: Callable[[IO[str], bool, bool], None],
) -> None:
    """Stream the rows into `out_path`. A full, read-only or forbidden place is a WriteError;
    a run that fails before its first row leaves no header-only file behind."""
    appending = resume and out_path.exists() and out_path.stat().st_size > 0
    created = not out_path.exists()
    # A device or pipe (/dev/null, /dev/stdout) cannot be fsync-ed; only regular files are.
    durable = created or out_path.is_file()
    try:
        with atomic.writing(out_path):
            out_path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(out_path, "a" if appending else "w", encoding="utf-8", newline="")  # noqa: SIM115
        with atomic.disk_errors(out_path), handle:
            write_rows(handle, durable, not appending)
    except BaseException:
        if created and summary.written == 0:
            with contextlib.suppress(OSError):
                out_path.unlink()
        raise


def _write_all(
    stream: IO[str],
    durable: bool,
    header: bool,
    todo: Sequence[Path],
    scorer: Scorer | None,
    record: ModelRecord,
    fmt: str,
    batch_size: int,
    summary: PredictSummary,
    reporter: Reporter,
    decision: tuple[int, float] | None,
) -> None:
    writer = RowWriter(
        stream,
        fmt,
        record.classes,
        record.id,
        durable=durable,
        decision=decision,
        calibration=summary.calibration,
    )
    if header:
        writer.header()
    if not todo:
        return
    pending: list[Prediction] = []

    def flush() -> None:
        writer.write(pending)
        for p in pending:
            if p.probabilities is None:
                summary.failed += 1
                if len(summary.first_errors) < 5:
                    summary.first_errors.append(p.error or f"{p.path}: unreadable")
            else:
                summary.predicted += 1
                summary.counts[record.classes[int(p.probabilities.argmax())]] += 1
                summary.decisions[writer.decided(p.probabilities)] += 1
                if p.ood_score is not None and p.ood_score > FLAG_ABOVE:
                    summary.ood_flagged += 1
        pending.clear()
        reporter.advance(PREDICT_TASK, summary.written)

    for prediction in predict_paths(None, todo, record.prep, batch_size, scorer=scorer):
        pending.append(prediction)
        if len(pending) >= batch_size:
            flush()
    flush()


def decision_rule(record: ModelRecord, threshold: str | None) -> tuple[int, float] | None:
    """(class index, threshold) for the decision column: --threshold, else the stored
    operating point, else None (the argmax)."""
    if threshold:
        cls, value = parse_threshold(threshold, record.classes)
        return record.classes.index(cls), value
    point = OperatingPoint.from_record(record.operating_point or None)
    if point is None or point.cls not in record.classes:
        return None
    return record.classes.index(point.cls), point.threshold
