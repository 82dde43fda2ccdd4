"""`sunrise generate | demo`: synthetic raw buckets, and the main job end to end on them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from sunrise_assets import settings
from sunrise_assets.cli.console import (
    UserError,
    WorkdirOpt,
    allow_demo_key,
    out,
    progress_bar,
)
from sunrise_assets.cli.nights import WorkOpt, print_scores, report_summary, run_ingest


def generate(
    nights: Annotated[
        int,
        typer.Option("--nights", min=1, help="Number of PAIRED nights to generate (unpaired files are added on top)."),
    ] = 20,
    bucket: Annotated[Path, typer.Option("--bucket", help="Directory to write the raw bucket into.")] = Path(
        ".sunrise/bucket"
    ),
    seed: Annotated[
        int, typer.Option("--seed", help="Random seed: the same seed gives the same files, byte for byte.")
    ] = 7,
    psg_format: Annotated[
        list[str],
        typer.Option(
            "--psg-format",
            help=(
                "Format of the PSG scoring: edf+, nsrr-xml, profusion-xml, noxturnal-csv, hypnogram-text, or all "
                "(nights cycle through them). Repeat to mix a few."
            ),
        ),
    ] = ["edf+"],  # noqa: B006 (Typer takes a repeatable option's default as a list; it is never mutated)
) -> None:
    """Write a synthetic raw bucket laid out the way sites deliver data (with identifiers)."""
    from sunrise_assets.synthetic.generate import generate_bucket

    formats = _psg_formats(psg_format)
    with progress_bar() as progress:
        task = progress.add_task("generating nights", total=nights)
        report = generate_bucket(bucket, nights, seed, on_night=lambda _i: progress.advance(task), psg_formats=formats)
    out.print(
        f"{len(report.nights)} paired nights, {len(report.unpaired_recordings)} recordings without PSG, "
        f"{len(report.unpaired_studies)} PSG studies without recording -> {bucket}"
    )


def _psg_formats(names: list[str]) -> tuple[str, ...]:
    from sunrise_assets.domain.psg_readers import FORMATS

    if "all" in names:
        return FORMATS
    unknown = [n for n in names if n not in FORMATS]
    if unknown:
        raise UserError(f"unknown PSG format(s) {', '.join(unknown)}; one of {', '.join(FORMATS)} or all")
    return tuple(names)


def demo(
    nights: Annotated[int, typer.Option("--nights", min=1, help="Paired nights to generate.")] = 20,
    workdir: WorkdirOpt = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the synthetic nights.")] = 7,
    psg_format: Annotated[
        list[str],
        typer.Option(
            "--psg-format",
            help="PSG scoring formats the sites deliver (see `sunrise generate --help`); default all: a messy bucket.",
        ),
    ] = ["all"],  # noqa: B006 (Typer takes a repeatable option's default as a list; it is never mutated)
    in_process: WorkOpt = False,
) -> None:
    """Generate nights, run the real Dagster pipeline on them, print their scores (the main job).

    The nights go through the instance's queue as `sunrise ingest` sends them (a dagster-daemon child
    runs them as local run processes, as many at a time as the instance allows)."""
    from sunrise_assets.synthetic.generate import generate_bucket

    formats = _psg_formats(psg_format)
    settings.use_workdir(workdir or settings.workdir())
    bucket = Path(settings.bucket_url())
    marker = settings.workdir() / "generated.json"
    wanted = {"nights": nights, "seed": seed, "psg_formats": list(formats)}
    if not (marker.exists() and json.loads(marker.read_text()) == wanted):
        with progress_bar() as progress:
            task = progress.add_task("generating nights", total=nights)
            generate_bucket(bucket, nights, seed, on_night=lambda _i: progress.advance(task), psg_formats=formats)
        marker.write_text(json.dumps(wanted))
    allow_demo_key()
    report = run_ingest(batch_size=settings.NIGHTS_PER_RUN, in_process=in_process)
    print_scores(limit=max(nights, 50))
    report_summary(report)
    out.print(f"Dagster UI with this history: [bold]sunrise ui --workdir {settings.workdir()}[/]")
    if report.failed or report.summary_error:
        raise typer.Exit(1)
