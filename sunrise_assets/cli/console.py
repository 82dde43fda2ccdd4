"""Shared output of the `sunrise` commands: consoles, progress bars, one-line user errors, and the
--bucket / --workdir options with what they set. Imports no Dagster (`sunrise --help` stays fast)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from sunrise_assets import settings

if TYPE_CHECKING:
    from resources.bucket import BucketResource

console = Console(stderr=True)
# Wide enough for night keys and a score table when the output is a file or a CI log.
out = Console(width=None if sys.stdout.isatty() else 120)


class UserError(Exception):
    """A mistake the user can fix: printed as one line, no traceback."""


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        disable=not console.is_terminal and os.environ.get("CI") == "true",
    )


def bucket_from_option(bucket: Optional[str]) -> BucketResource:
    """The bucket of a --bucket option (sets SUNRISE_BUCKET for this process and its runs) or of the settings."""
    from resources.bucket import BucketResource

    use_bucket_option(bucket)
    return BucketResource(url=settings.bucket_url(), raw_url=settings.raw_bucket_url())


def use_bucket_option(bucket: Optional[str]) -> None:
    """A --bucket option, set as SUNRISE_BUCKET for this process and its children (no Dagster import)."""
    if bucket is not None:
        local = not bucket.startswith("gs://")
        os.environ["SUNRISE_BUCKET"] = str(Path(bucket).expanduser().resolve()) if local else bucket


def warehouse_from_settings(url: Optional[str] = None):
    """The warehouse of the settings (URL, and password when given apart), for commands that query it."""
    from resources.sql_warehouse import WarehouseResource

    return WarehouseResource(url=url or settings.warehouse_url(), password=settings.warehouse_password())


class ReadProgress:
    """A bucket seen through a progress bar: each listing adds its recordings and EDF files to the
    total, each read advances it (the scan reads every one once)."""

    def __init__(self, bucket, progress: Progress, task) -> None:
        self._bucket, self._progress, self._task = bucket, progress, task

    def list(self, prefix: str = "", **kwargs):
        objects = list(self._bucket.list(prefix, **kwargs))
        found = sum(o.path.lower().endswith((".pb", ".edf")) for o in objects)
        self._progress.update(self._task, total=(self._progress.tasks[self._task].total or 0) + found)
        return iter(objects)

    def read_bytes(self, path: str) -> bytes:
        data = self._bucket.read_bytes(path)
        self._progress.advance(self._task)
        return data

    def __getattr__(self, name: str):
        return getattr(self._bucket, name)


BucketOpt = Annotated[
    Optional[str],
    typer.Option(
        "--bucket",
        help=(
            "The raw bucket: a local directory or gs://BUCKET/PREFIX (default: $SUNRISE_BUCKET or "
            "$SUNRISE_WORKDIR/bucket)."
        ),
    ),
]
WorkdirOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--workdir",
        help=(
            "Work directory holding the bucket, the SQLite warehouse and DAGSTER_HOME (default: $SUNRISE_WORKDIR or "
            "./.sunrise)."
        ),
    ),
]


def allow_demo_key() -> None:
    """Let this process and the Dagster runs it starts fall back to the public demo key."""
    from sunrise_assets.domain.anonymise import ALLOW_DEMO_ENV

    os.environ[ALLOW_DEMO_ENV] = "1"


def error_exit(message: str, code: int = 2) -> None:
    """One red line on stderr (never wrapped, markup in the message shown as is), then exit."""
    from rich.markup import escape

    console.print(f"[red]error:[/] {escape(message)}", soft_wrap=True)
    sys.exit(code)


def command_path(ctx) -> str:
    names = []
    while ctx is not None and ctx.parent is not None:
        names.append(ctx.info_name)
        ctx = ctx.parent
    return " ".join(["sunrise", *reversed(names)])
