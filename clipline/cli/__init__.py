"""The ``clipline`` command: the one entry point (``main``) and the one Typer app.

Each command, or group of sub-commands, lives in a module of its own here, named after it; this
module only assembles them. A command module never imports this one, nor a sibling that imports
it back: what several commands build (settings, the schema-checked ledger, the Celery queue)
lives in ``clipline.cli.context``.
"""

from __future__ import annotations

import sys

import typer
from pydantic import ValidationError

from clipline.cli import (
    api,
    datasets,
    db,
    demo,
    evaluate,
    events,
    jobs,
    models,
    recompose,
    reconcile,
    submit,
    tenants,
    train,
    triton,
    worker,
)
from clipline.cli import run as run_command
from pipeline.errors import ClipError, LedgerRefusal, UsageError
from pipeline.fields import escaped

try:  # typer 0.22+ carries its own copy of click; older versions use click itself
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover
    from click import exceptions as click_errors  # type: ignore[no-redef]

# `clipline` (or a group) with no arguments prints the help as a usage error (click 8.2+).
_NO_ARGS = getattr(click_errors, "NoArgsIsHelpError", ())

app = typer.Typer(
    name="clipline",
    help="Clipline: cut product images out of their backgrounds, one image or millions.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help: click rewraps docstring paragraphs to the terminal's width.
    rich_markup_mode=None,
)
# The order here is the order of `clipline --help`: the commands, then the groups.
app.command("run")(run_command.run)
app.command("recompose")(recompose.recompose_command)
app.command("demo")(demo.demo)
app.command("status")(jobs.status)
app.command("redrive")(jobs.redrive)
app.command("worker")(worker.worker)
app.command("reconcile")(reconcile.reconcile)
app.command("api")(api.api)
app.command("submit")(submit.submit)
app.command("events")(events.events)
app.command("eval")(evaluate.eval_)
app.command("train")(train.train)
app.add_typer(db.app, name="db")
app.add_typer(models.app, name="models")
app.add_typer(triton.app, name="triton")
app.add_typer(tenants.app, name="tenants")
app.add_typer(datasets.app, name="datasets")


def main() -> None:
    """Entry point: a known failure is one clear line on stderr and exit status 2.

    Click runs outside its standalone mode so that its usage errors (a missing argument, an
    unknown option, a value out of range) are one line too, like every other refusal; help
    and a command's own exit status are unchanged, and Ctrl-C is exit status 130.
    """
    try:
        code = app(standalone_mode=False)
    except _NO_ARGS as exc:
        exc.show()  # the help, as before
        sys.exit(exc.exit_code)
    except click_errors.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else "clipline"
        _fail(f"{exc.format_message()} (see `{where} --help`)", exc.exit_code)
    except click_errors.ClickException as exc:
        _fail(exc.format_message(), exc.exit_code)
    except typer.Abort:
        _fail("aborted", 1)
    except ValidationError as exc:
        problems = "; ".join(
            (f"CLIPLINE_{'_'.join(map(str, e['loc'])).upper()}: " if e["loc"] else "")
            + e["msg"]
            for e in exc.errors()
        )
        _fail(f"invalid setting: {problems}")
    except (ClipError, LedgerRefusal, UsageError) as exc:
        _fail(f"{exc.reason}: {exc}")
    sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str, status: int = 2) -> None:
    """``clipline: message`` on one line (newlines and control characters escaped)."""
    print(f"clipline: {escaped(' '.join(message.splitlines()), 4000)}", file=sys.stderr)
    sys.exit(status)
