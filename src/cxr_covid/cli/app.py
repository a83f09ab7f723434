"""The Typer application and the single place where errors become exit codes."""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from typing import Annotated, Any, NoReturn

import typer
from rich.markup import escape
from typer.core import TyperGroup

from cxr_covid.about import DISCLAIMER, __version__
from cxr_covid.cli.console import err, error
from cxr_covid.errors import EXIT_CODES, EXIT_INTERRUPTED, CxrCovidError, WriteError

try:  # Typer >= 0.24 vendors Click; older versions use Click itself.
    from typer._click.exceptions import NoArgsIsHelpError
    from typer._click.exceptions import UsageError as ClickUsageError
except ImportError:  # pragma: no cover - depends on the installed Typer
    from click.exceptions import NoArgsIsHelpError  # type: ignore[no-redef,assignment,import-not-found]
    from click.exceptions import UsageError as ClickUsageError  # type: ignore[no-redef,assignment,import-not-found]

EPILOG = (
    f"{DISCLAIMER}\n\n"
    "Exit codes: "
    + escape("; ".join(f"{code} {meaning}" for code, meaning in EXIT_CODES))
    + ".\n\nHome: $CXR_COVID_HOME, else the platform's user data folder (see `cxr-covid info`)."
)


class _CxrCovidGroup(TyperGroup):
    """Turns the tool's own errors into `Error: ...` on stderr and their exit code.

    Doing it in the group's invoke (not in `main`) means CliRunner tests see exactly what a
    user sees.
    """

    def invoke(self, ctx: Any) -> Any:
        try:
            if not _runs_tensorflow(ctx):
                return super().invoke(ctx)
            # Options are checked before TensorFlow loads; it loads (quietly) when needed.
            from cxr_covid.tf_runtime import quiet_tensorflow_imports

            with quiet_tensorflow_imports():
                return super().invoke(ctx)
        except CxrCovidError as exc:
            hint = _RERUN_HINTS.get(_command_word(ctx), "")
            if exc.exit_code == EXIT_INTERRUPTED and hint:
                # A training interrupted inside a grid (compare, reproduce, audit): its own
                # advice (`train --resume ID`) is not how such a command continues.
                err.print(f"[yellow]Interrupted[/]; nothing half-written was kept{hint}.")
            else:
                error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except BrokenPipeError:
            _quiet_broken_pipe()
        except OSError as exc:
            # Last resort for a write the core did not wrap: a full, read-only or forbidden
            # place is the environment's problem, said in one line with its own code.
            from cxr_covid.atomic import WRITE_ERRNOS, write_error

            if exc.errno not in WRITE_ERRNOS:
                raise
            if exc.filename:
                failure = write_error(exc.filename, exc)
            else:  # a write on an open file: the system does not say which
                failure = WriteError(f"cannot write: {exc.strerror or exc}")
            error(str(failure))
            raise typer.Exit(failure.exit_code) from None
        except NoArgsIsHelpError:
            raise  # a bare group (`cxr-covid models`): its help, as usual
        except ClickUsageError as exc:
            _usage_error(exc)
        except typer.Abort as exc:
            # Raised by a confirmation prompt (`models rm`) on end of input or Ctrl-C; Typer
            # would print "Aborted." and exit 1, the code for a bug.
            typer.echo()  # end the prompt's line
            if isinstance(exc.__context__, EOFError):
                error("no answer to the question (end of input): nothing was changed; add --yes")
                raise typer.Exit(2) from None
            err.print("[yellow]Interrupted[/]; nothing was changed.")
            raise typer.Exit(130) from None
        except KeyboardInterrupt:
            # Commands with their own advice (train, predict, heatmap) catch Ctrl-C themselves;
            # for the rest Typer would exit 130 without a word.
            hint = _RERUN_HINTS.get(_command_word(ctx), "")
            err.print(f"[yellow]Interrupted[/]; nothing half-written was kept{hint}.")
            raise typer.Exit(130) from None

    def main(self, *args: Any, **kwargs: Any) -> Any:
        # The one place every way out passes: rich's console (`Console.on_broken_pipe`) and
        # Click's own main both answer a closed pipe with SystemExit(1), the code for a bug,
        # before (or outside) invoke's handler; `info | true` and `--version | true` too.
        try:
            return super().main(*args, **kwargs)
        except SystemExit as exc:
            if exc.code == 1 and _caused_by_broken_pipe(exc):
                _silence_stdout()
                raise SystemExit(EXIT_BROKEN_PIPE) from None
            raise

    def get_params(self, ctx: Any) -> Any:
        return _hide_flag_types(super().get_params(ctx))

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _hide_flag_types_below(command, ctx)
        return command

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        # The root's own options are parsed here, before invoke.
        try:
            return super().make_context(*args, **kwargs)
        except NoArgsIsHelpError:
            raise
        except ClickUsageError as exc:
            _usage_error(exc)


def _hide_flag_types(params: list[Any]) -> list[Any]:
    """A flag takes no value, so its help row shows no type: Typer would print `<bool>`.

    An empty metavar is what its help renderer shows instead of the type (it only names the
    value a user would type, so parsing is unchanged).
    """
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    return params


def _hide_flag_types_below(command: Any, ctx: Any) -> None:
    # Every command of the tree (`models export` too), including its --help option.
    _hide_flag_types(command.get_params(ctx))
    for sub in getattr(command, "commands", {}).values():
        _hide_flag_types_below(sub, ctx)


# What a shell reports for a program ended by SIGPIPE (128 + 13), as `yes | head -1` does.
EXIT_BROKEN_PIPE = 141


def _caused_by_broken_pipe(exc: BaseException) -> bool:
    """Whether `exc` was raised while handling a closed pipe (EPIPE) on stdout or stderr."""
    seen: set[int] = set()
    cause: BaseException | None = exc.__context__
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, BrokenPipeError) or (
            isinstance(cause, OSError) and cause.errno == errno.EPIPE
        ):
            return True
        cause = cause.__context__
    return False


def _quiet_broken_pipe() -> NoReturn:
    """The reader of stdout went away (`predict -o - | head -3`): stop quietly, with the code
    a shell gives any program killed by SIGPIPE."""
    _silence_stdout()
    raise typer.Exit(EXIT_BROKEN_PIPE)


def _silence_stdout() -> None:
    """Python's documented recipe: point stdout at /dev/null so the interpreter's final flush
    cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # not a real file (a test runner's buffer)
        pass


def _usage_error(exc: ClickUsageError) -> NoReturn:
    """A bad option value or a missing argument: one line like every other error (as
    docs/exit-codes.md promises), not Typer's framed box, and where to get help."""
    where = f" (see `{exc.ctx.command_path} -h`)" if exc.ctx is not None else ""
    # Typer words a value outside an option's choices "...: Value error, 'x' is not one of".
    message = exc.format_message().replace(": Value error, ", ": ")
    error(message.rstrip(".") + where)
    raise typer.Exit(exc.exit_code) from None


_RERUN_HINTS = {
    "reproduce": " (rerun the same command to continue: finished steps are skipped)",
    "download": " (rerun the same command: an interrupted transfer resumes)",
    "audit": " (rerun the same command: a trained lung-blind control is reused)",
    "compare": " (rerun the same command to continue: finished trainings are reused)",
}

# Commands whose work needs TensorFlow; their --help must not import it.
_TF_COMMANDS = {
    "train",
    "eval",
    "reproduce",
    "predict",
    "heatmap",
    "info",
    "calibrate",
    "audit",
    "compare",
}


def _command_word(ctx: Any) -> str:
    """The subcommand being run (Click empties the context's argument lists once it has
    dispatched, so after the fact only `invoked_subcommand` still names it)."""
    if ctx.invoked_subcommand:
        return str(ctx.invoked_subcommand)
    words = [*getattr(ctx, "_protected_args", []), *ctx.args]
    return str(words[0]) if words else ""


def _runs_tensorflow(ctx: Any) -> bool:
    words = [*getattr(ctx, "_protected_args", []), *ctx.args]
    if not words or words[0] not in _TF_COMMANDS:
        return False
    return not any(word in ("-h", "--help") for word in words[1:])


app = typer.Typer(
    name="cxr-covid",
    cls=_CxrCovidGroup,
    help=(
        "Reproduce and extend a CNN study that tells COVID-19, healthy and viral-pneumonia "
        f"chest X-rays apart, and show where the networks look. {DISCLAIMER}"
    ),
    epilog=EPILOG,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"cxr-covid {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Print the version."
        ),
    ] = False,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet",
            "-q",
            help="Errors and results only: no progress bars, messages or warnings on stderr.",
        ),
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option("--verbose", help="Also show TensorFlow's own logs (for debugging)."),
    ] = False,
) -> None:
    """Root options."""
    from cxr_covid.cli.console import NORMAL, QUIET, VERBOSE, set_verbosity
    from cxr_covid.errors import UsageError

    if quiet and verbose:
        raise UsageError("--quiet and --verbose exclude each other")
    set_verbosity(QUIET if quiet else VERBOSE if verbose else NORMAL)


def _register_commands() -> None:
    # Each command lives in its own module; importing them must not import TensorFlow.
    from cxr_covid.cli import (
        audit,
        augment,
        calibrate,
        compare,
        datasets,
        download,
        evaluate,
        heatmap,
        info,
        model_ensemble,
        model_sharing,
        models,
        predict,
        reproduce,
        train,
    )

    app.command("download", help=download.HELP, epilog=EPILOG)(download.download)
    app.command("augment", help=augment.HELP, epilog=EPILOG)(augment.augment)
    app.command("train", help=train.HELP, epilog=EPILOG)(train.train)
    app.command("eval", help=evaluate.HELP, epilog=EPILOG)(evaluate.evaluate)
    app.command("reproduce", help=reproduce.HELP, epilog=EPILOG)(reproduce.reproduce)
    app.command("calibrate", help=calibrate.HELP, epilog=EPILOG)(calibrate.calibrate)
    app.command("predict", help=predict.HELP, epilog=EPILOG)(predict.predict)
    app.command("heatmap", help=heatmap.HELP, epilog=EPILOG)(heatmap.heatmap)
    models.app.command("export", epilog=EPILOG)(model_sharing.export)
    models.app.command("pack", epilog=EPILOG)(model_sharing.pack)
    models.app.command("import", epilog=EPILOG)(model_sharing.import_)
    models.app.command("card", epilog=EPILOG)(model_sharing.card)
    models.app.command("ensemble", epilog=EPILOG)(model_ensemble.ensemble)
    app.command("audit", help=audit.HELP, epilog=EPILOG)(audit.audit)
    app.command("compare", help=compare.HELP, epilog=EPILOG)(compare.compare)
    app.add_typer(models.app, name="models", help=models.HELP)
    app.add_typer(datasets.app, name="datasets", help=datasets.HELP)
    app.command("info", help=info.HELP, epilog=EPILOG)(info.info)


_register_commands()


def main() -> None:
    try:
        app()
    except SystemExit as exc:
        if exc.code == EXIT_INTERRUPTED:
            _exit_now(EXIT_INTERRUPTED)
        raise


def _exit_now(code: int) -> NoReturn:
    """Leave without the interpreter's shutdown, after an interrupt.

    Measured here: after a Ctrl-C during training, about one exit in three still died by SIGINT
    (-2 to a parent process, not the documented 130) somewhere in the interpreter's shutdown,
    after every atexit handler had run; TensorFlow's threads are still alive then. The
    interrupted command has already removed or kept its files, so there is nothing left to
    tidy: flush what was printed and exit with the code the documentation gives.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
