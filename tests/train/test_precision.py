"""Issue 18: the precision a run trains in. The choice from injected CPU flags and GPU compute
capabilities; bfloat16 training that stores a float32 model predicting exactly as one; the
record; resume and --deterministic refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cxr_covid.cli import app
from cxr_covid.errors import EXIT_USAGE, UsageError
from cxr_covid.models import store
from cxr_covid.models.records import recipe_of_training
from cxr_covid.training import precision
from cxr_covid.training import run as training
from cxr_covid.training.precision import FLAGS_ENV, choose
from cxr_covid.training.run import TrainConfig
from tests.helpers import build_dataset

runner = CliRunner()

AMX = {"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}  # a Sapphire Rapids
ZEN4 = {"avx512f", "avx512_bf16"}  # AVX512-BF16 without AMX
AVX2 = {"avx2", "fma"}


def _cpu(requested: str, flags: set[str], deterministic: bool = False) -> precision.Choice:
    return choose(requested, gpu_capabilities=[], flags=flags, deterministic=deterministic)


# --- the choice, without TensorFlow ---------------------------------------------------------


def test_auto_on_a_cpu_is_bfloat16_only_with_amx() -> None:
    assert _cpu("auto", AMX).policy == "mixed_bfloat16"
    assert "amx_bf16" in _cpu("auto", AMX).reason
    assert _cpu("auto", ZEN4).policy == "float32"
    assert "AVX512-BF16" in _cpu("auto", ZEN4).reason
    assert _cpu("auto", AVX2).policy == "float32"
    assert _cpu("auto", set()).policy == "float32"
    # --deterministic never gets bfloat16 from auto.
    assert _cpu("auto", AMX, deterministic=True).policy == "float32"


def test_explicit_requests_on_a_cpu() -> None:
    assert _cpu("float32", AMX).policy == "float32"
    assert _cpu("bfloat16", AMX).policy == "mixed_bfloat16"
    assert _cpu("bfloat16", AMX).note is None
    slow = _cpu("bfloat16", AVX2)
    assert slow.policy == "mixed_bfloat16" and slow.note and "slower" in slow.note
    # mixed is the device's best mixed policy: bfloat16 on a CPU.
    assert _cpu("mixed", AMX).policy == "mixed_bfloat16"
    assert _cpu("float16", AMX).policy == "mixed_float16"
    assert _cpu("float16", AMX).note


def test_gpu_path() -> None:
    def gpu(requested: str, *capabilities: tuple[int, int] | None) -> precision.Choice:
        return choose(requested, gpu_capabilities=list(capabilities), flags=AMX)

    assert gpu("auto", (8, 0)).policy == "mixed_float16"  # the GPU decides, not the CPU's AMX
    assert gpu("auto", (7, 0), (8, 6)).policy == "mixed_float16"
    assert gpu("auto", (6, 1)).policy == "float32"
    assert gpu("auto", (8, 0), (6, 1)).policy == "float32"  # the weakest GPU decides
    assert gpu("auto", None).policy == "float32"  # capability unknown: no guess
    assert gpu("mixed", (8, 0)).policy == "mixed_float16"
    assert gpu("float16", (6, 1)).note  # runs, but says it gains nothing
    assert gpu("bfloat16", (9, 0)).policy == "mixed_bfloat16"
    assert gpu("bfloat16", (7, 5)).note
    assert gpu("float32", (9, 0)).policy == "float32"


def test_bad_requests_are_refused() -> None:
    with pytest.raises(UsageError, match="unknown precision 'half'"):
        _cpu("half", AMX)
    with pytest.raises(UsageError, match="--deterministic needs --precision float32"):
        _cpu("bfloat16", AMX, deterministic=True)
    # mixed means bfloat16 on a CPU, so it is refused with --deterministic too.
    with pytest.raises(UsageError, match="--deterministic"):
        _cpu("mixed", AVX2, deterministic=True)


def test_cpu_flags_from_cpuinfo_and_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu avx2 amx_bf16 amx_tile\n\n"
        "processor\t: 1\nflags\t\t: fpu\n"
    )
    monkeypatch.delenv(FLAGS_ENV, raising=False)
    assert precision.cpu_flags(cpuinfo) == {"fpu", "avx2", "amx_bf16", "amx_tile"}
    assert precision.cpu_flags(tmp_path / "missing") == frozenset()
    monkeypatch.setenv(FLAGS_ENV, "avx512_bf16, avx2")
    assert precision.cpu_flags(cpuinfo) == {"avx512_bf16", "avx2"}
    assert precision.bf16_flags({"avx512_bf16", "amx_bf16", "avx2"}) == ["amx_bf16", "avx512_bf16"]


def test_resume_check() -> None:
    here = _cpu("auto", AVX2)
    precision.check_resume("", here)  # a run folder from before precisions were recorded
    precision.check_resume("float32", here)
    with pytest.raises(UsageError, match="started in mixed_bfloat16 but --precision auto"):
        precision.check_resume("mixed_bfloat16", here)


# --- real (tiny) training runs ----------------------------------------------------------------


def _config(**overrides: object) -> TrainConfig:
    base: dict[str, object] = {
        "dataset": "blobs",
        "epochs": 1,
        "batch_size": 8,
        "image_size": 16,
        "seed": 3,
        "calibrate": False,
    }
    base.update(overrides)
    return TrainConfig(**base)  # type: ignore[arg-type]


def test_bfloat16_training_stores_a_float32_model(
    cxr_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import keras

    from cxr_covid import models
    from cxr_covid.data import pipeline
    from cxr_covid.sharing.export import export_model

    dataset = build_dataset(cxr_home, "blobs", per_class=6, size=16)
    monkeypatch.setenv(FLAGS_ENV, " ".join(sorted(AMX)))  # as on an AMX CPU
    result = training.train(_config(name="bf16", calibrate=True))
    record = result.record
    assert record.training["precision"] == "auto"
    assert record.training["precision_used"] == "mixed_bfloat16"
    assert "amx_bf16" in record.training["precision_reason"]
    assert keras.mixed_precision.global_policy().name == "float32"  # left as found

    # The record round-trips through model.json.
    again = store.resolve("bf16").record()
    assert again.training["precision_used"] == "mixed_bfloat16"
    assert again.training["precision_reason"] == record.training["precision_reason"]
    assert again.to_dict() == record.to_dict()

    # The stored model is float32 through and through...
    loaded = store.resolve("bf16").load()
    assert {layer.dtype_policy.name for layer in loaded.layers} == {"float32"}
    assert {w.dtype for w in loaded.get_weights()} == {np.dtype("float32")}
    # ... and predicts exactly as a float32 rebuild carrying its weights.
    rebuilt = models.build("baseline", 16, 3)
    rebuilt.set_weights(loaded.get_weights())
    val = pipeline.cache_split(dataset, "val", again.prep)
    with val.reader() as reader:
        pixels, _ = reader.read(np.arange(val.count))
    x = pixels.astype(np.float32)
    probabilities = np.asarray(loaded(x, training=False))
    assert probabilities.dtype == np.float32
    assert np.array_equal(probabilities, np.asarray(rebuilt(x, training=False)))
    # It was fit in bfloat16: a float32 run from the same seed ends elsewhere.
    float32 = training.train(_config(name="f32", precision="float32"))
    assert float32.record.training["precision_used"] == "float32"
    other = float32.model.load().get_weights()
    assert not all(np.array_equal(a, b) for a, b in zip(loaded.get_weights(), other, strict=True))

    # Export and its self-check (<= 1e-4 against Keras) are unchanged.
    exported = export_model(store.resolve("bf16"), "savedmodel", tmp_path / "exported")
    assert exported.max_difference <= 1e-4
    assert (tmp_path / "exported" / "saved_model.pb").is_file()


def test_cli_prints_the_choice_and_refuses_deterministic_bfloat16(cxr_home: Path) -> None:
    build_dataset(cxr_home, "blobs", per_class=4, size=16)
    base = ["train", "--dataset", "blobs", "--epochs", "1", "--image-size", "16"]
    base += ["--batch-size", "8", "--no-calibrate"]
    refused = runner.invoke(app, [*base, "--deterministic", "--precision", "bfloat16"])
    assert refused.exit_code == EXIT_USAGE
    assert "--deterministic needs --precision float32" in refused.stderr
    assert "Traceback" not in refused.output
    assert not (cxr_home / "runs").exists() or not any((cxr_home / "runs").iterdir())

    done = runner.invoke(
        app, [*base, "--name", "plain", "--json"], env={FLAGS_ENV: "avx2 avx512_bf16"}
    )
    assert done.exit_code == 0, done.output
    assert "precision float32 (no GPU; the CPU has AVX512-BF16 but no AMX" in done.stderr
    record = json.loads(done.stdout)["record"]
    assert record["training"]["precision"] == "auto"
    assert record["training"]["precision_used"] == "float32"


def test_resume_with_another_precision_is_refused(
    cxr_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build_dataset(cxr_home, "blobs", per_class=4, size=16)
    monkeypatch.setenv(FLAGS_ENV, "amx_bf16 amx_tile")

    def stop(report: training.EpochReport) -> None:
        raise KeyboardInterrupt

    with pytest.raises(training.TrainingInterrupted):
        training.train(_config(name="moved", epochs=2), on_epoch=stop)
    state = json.loads((training.run_dir("moved") / "state.json").read_text())
    assert state["precision"] == "mixed_bfloat16" and state["epochs_done"] == 1

    # Continued on a CPU without AMX, `auto` would pick float32: refused, the run kept.
    monkeypatch.setenv(FLAGS_ENV, "avx2")
    with pytest.raises(UsageError, match="started in mixed_bfloat16 but --precision auto"):
        training.resume("moved")
    cli = runner.invoke(app, ["train", "--resume", "moved"], env={FLAGS_ENV: "avx2"})
    assert cli.exit_code == EXIT_USAGE
    assert "started in mixed_bfloat16" in cli.stderr and "Traceback" not in cli.output
    assert (training.run_dir("moved") / "state.json").is_file()

    # Back on a machine like the first one, it finishes in the precision it started with.
    monkeypatch.setenv(FLAGS_ENV, "amx_bf16 amx_tile")
    finished = training.resume("moved")
    assert finished.record.training["precision_used"] == "mixed_bfloat16"
    assert finished.record.training["epochs_run"] == 2


def test_a_run_folder_without_a_recorded_precision_resumes(
    cxr_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build_dataset(cxr_home, "blobs", per_class=4, size=16)
    monkeypatch.delenv(FLAGS_ENV, raising=False)

    def stop(report: training.EpochReport) -> None:
        raise KeyboardInterrupt

    with pytest.raises(training.TrainingInterrupted):
        training.train(_config(name="old-run", epochs=2, precision="float32"), on_epoch=stop)
    state_file = training.run_dir("old-run") / "state.json"
    state = json.loads(state_file.read_text())
    del state["precision"]  # as written before issue 18
    state_file.write_text(json.dumps(state))
    assert training.resume("old-run").record.training["precision_used"] == "float32"


def test_an_old_cpu_mixed_run_resumes_in_float32_as_it_started(
    cxr_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before issue 18, `--precision mixed` on a CPU trained in float32; a run folder from
    then (no recorded policy) must not switch to bfloat16 halfway on an AMX machine."""
    build_dataset(cxr_home, "blobs", per_class=4, size=16)
    monkeypatch.setenv(FLAGS_ENV, "avx2")

    def stop(report: training.EpochReport) -> None:
        raise KeyboardInterrupt

    with pytest.raises(training.TrainingInterrupted):
        training.train(_config(name="old-mixed", epochs=2, precision="float32"), on_epoch=stop)
    folder = training.run_dir("old-mixed")
    config = json.loads((folder / "config.json").read_text())
    config["config"]["precision"] = "mixed"  # what the old run was asked for
    (folder / "config.json").write_text(json.dumps(config))
    state = json.loads((folder / "state.json").read_text())
    del state["precision"]  # as written before issue 18
    (folder / "state.json").write_text(json.dumps(state))
    monkeypatch.setenv(FLAGS_ENV, "amx_bf16 amx_tile")  # mixed means bfloat16 here now
    assert training.resume("old-mixed").record.training["precision_used"] == "float32"


def test_old_records_without_a_precision_load_as_before(cxr_home: Path) -> None:
    build_dataset(cxr_home, "blobs", per_class=4, size=16)
    result = training.train(_config(name="old", precision="float32"))
    model_json = result.model.root / store.RECORD_FILE
    data = json.loads(model_json.read_text())
    for key in ("precision", "precision_reason"):
        del data["training"][key]
    data["training"]["precision_used"] = "float32"
    model_json.write_text(json.dumps(data))
    stored = store.resolve("old")
    record = stored.record()
    assert "precision" not in record.training
    assert "precision" not in recipe_of_training(record.training)  # placement, not recipe
    assert stored.load().predict(np.zeros((1, 16, 16, 3), np.float32), verbose=0).shape == (1, 3)
    shown = runner.invoke(app, ["models", "show", "old", "--json"])
    assert shown.exit_code == 0, shown.output


def test_reproduce_times_steps_in_the_precision_it_will_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import keras

    from cxr_covid import models
    from cxr_covid.training import grid

    seen: list[str] = []
    build = models.build

    def spy(*args: object, **kwargs: object) -> object:
        seen.append(keras.mixed_precision.global_policy().name)
        return build(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(models, "build", spy)
    monkeypatch.setenv(FLAGS_ENV, "amx_bf16")
    assert grid.measure_step_seconds("baseline", 16, 2, steps=1) > 0
    monkeypatch.setenv(FLAGS_ENV, "avx2")
    assert grid.measure_step_seconds("baseline", 16, 2, steps=1) > 0
    assert seen == ["mixed_bfloat16", "float32"]
    assert keras.mixed_precision.global_policy().name == "float32"


def test_training_restores_the_callers_own_policy(cxr_home: Path) -> None:
    """A caller (a notebook, the API) that set its own policy gets it back after a training,
    not float32."""
    import keras

    build_dataset(cxr_home, "blobs", per_class=6, size=16)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        result = training.train(_config(name="kept", precision="float32"))
        assert result.record.training["precision_used"] == "float32"
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
    finally:
        keras.mixed_precision.set_global_policy("float32")
