"""`sunrise psg ...`: look into PSG label files of any supported format, without the pipeline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

psg_app = typer.Typer(
    help=(
        "PSG label files (EDF+, NSRR XML, Profusion XML, Noxturnal CSV, hypnogram text): inspect what a lab export "
        "holds."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@psg_app.command()
def inspect(
    file: Annotated[
        Path,
        typer.Argument(
            help=(
                "PSG label file: EDF+, NSRR PSGAnnotation XML, Profusion XML, Noxturnal CSV or hypnogram text "
                "(format recognised from the content)."
            )
        ),
    ],
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help=(
                "Print one JSON object with the keys format, epochs, stage_counts, event_counts, skipped (label, "
                "count and reason of every annotation not kept as an event), scores."
            ),
        ),
    ] = False,
    stage_coding: Annotated[
        Optional[str],
        typer.Option(
            "--stage-coding",
            help=(
                "Integer coding of a hypnogram text file, required for integer hypnograms: 'yasa' (4 = REM), "
                "'rk-5rem' (5 = REM), or 'INT=STAGE,...' such as '0=W,1=N1,2=N2,3=N3,5=REM,-1=?'."
            ),
        ),
    ] = None,
) -> None:
    """Print the detected format, epochs, stage counts, event counts by type, what was skipped and why (deleted
    events, technician notes, markers with an unusable time), and the clinical scores."""
    from sunrise_assets.cli.console import UserError, out
    from sunrise_assets.domain.psg_readers import PsgFormatError, labels_scores, read_labels

    try:
        data = file.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {file}: {exc.strerror or exc}") from exc
    try:
        labels = read_labels(data, source=str(file), stage_coding=stage_coding)
    except PsgFormatError as exc:
        raise UserError(str(exc)) from exc
    report = {
        "format": labels.format,
        "epochs": labels.n_epochs,
        "stage_counts": labels.stage_counts(),
        "event_counts": labels.event_counts(),
        "skipped": labels.skipped(),
        "scores": labels_scores(labels),
    }
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return

    from rich.table import Table

    start = "no clock time in the file" if labels.start is None else labels.start.isoformat(sep=" ")
    out.print(
        f"[bold]{file.name}[/]: format [bold]{report['format']}[/], {report['epochs']} epochs of "
        f"{labels.epoch_s:g} s ({start})" + ("" if labels.has_staging else ", [yellow]no staging[/] (home sleep test)")
    )
    out.print("stages: " + "  ".join(f"{k} {v}" for k, v in report["stage_counts"].items()))
    out.print("events: " + "  ".join(f"{k} {v}" for k, v in report["event_counts"].items()))
    for row in report["skipped"]:
        reason = f" ({row['reason']})" if row["reason"] else ""
        out.print(f"skipped: {row['label']} x{row['count']}{reason}", markup=False, highlight=False)
    table = Table(title="clinical scores (AASM)")
    table.add_column("score")
    table.add_column("value", justify="right")
    for key, value in report["scores"].items():
        table.add_row(key, "unavailable" if value is None else f"{value:.2f}")
    out.print(table)
