"""What every stage's ``main()`` shares: one-line errors instead of tracebacks, logging, timing."""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator

import click

from pipeline.core.utils import PipelineError, setup_logging

#: Errors a user can cause (bad input, missing files); anything else is a bug and keeps its traceback.
USER_ERRORS = (PipelineError, ValueError)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn :data:`USER_ERRORS` and other ``OSError`` into ``click.ClickException``: one line, exit 1."""
    setup_logging()
    try:
        yield
    except click.ClickException:
        raise
    except (*USER_ERRORS, OSError) as error:
        raise click.ClickException(_one_line(error)) from None


def _one_line(error: BaseException) -> str:
    if isinstance(error, OSError) and error.filename:
        return f"{error.filename}: {error.strerror or error}"
    text = " ".join(str(error).split())
    return text or type(error).__name__


def run(command: click.Command) -> None:
    """Run a click command so that every error, usage errors included, is one line and a non-zero exit.

    Usage errors exit 2 and the rest exit 1, as with click; ``--help`` prints and exits 0.
    """
    try:
        command.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Error: aborted", err=True)
        sys.exit(1)
    except click.ClickException as error:
        click.echo(f"Error: {_one_line_text(error.format_message())}", err=True)
        sys.exit(error.exit_code)


def _one_line_text(text: str) -> str:
    return " ".join(text.split())
