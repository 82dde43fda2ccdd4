"""`sunrise fit-model` and `sunrise model ...`: sunalgo's model fitted from the warehouse, its card,
and which model is production."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from sunrise_assets import settings
from sunrise_assets.cli.console import UserError, WorkdirOpt, bucket_from_option, out, progress_bar

model_app = typer.Typer(
    help="sunalgo models: list them, show a model card, promote one to production.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

SHIPPED_PARAMS = settings.REPO_ROOT / "sunalgo" / "model_params" / "params.json"


def fit_model(
    workdir: WorkdirOpt = None,
    bootstrap_synthetic: Annotated[
        bool,
        typer.Option(
            "--bootstrap-synthetic",
            help="For an empty warehouse only: fit on simulated nights instead (writes --out, the shipped parameters).",
        ),
    ] = False,
    nights: Annotated[int, typer.Option("--nights", min=4, help="--bootstrap-synthetic: simulated nights.")] = 80,
    seed: Annotated[
        int, typer.Option("--seed", help="--bootstrap-synthetic: seed of the simulated nights (apart from the demo's).")
    ] = 20240501,
    out_path: Annotated[
        Path, typer.Option("--out", help="--bootstrap-synthetic: where to write the parameters.")
    ] = SHIPPED_PARAMS,
    in_process: Annotated[
        bool, typer.Option("--in-process", help="Fit in this process instead of a run submitted to the instance.")
    ] = False,
) -> None:
    """Fit sunalgo's stage and respiratory-event models from the warehouse's training_epochs (a run of
    stage_model submitted to the instance), 20 % of subjects held out; print the model card. Promote it with
    `sunrise model promote`."""
    # Small matrices: a multithreaded BLAS is slower here on 2 cores; numpy is not imported yet.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if bootstrap_synthetic:
        from sunrise_assets.synthetic.bootstrap_fit import fit_from_synthetic

        with progress_bar() as progress:
            task = progress.add_task("simulated training nights", total=nights)
            params = fit_from_synthetic(nights, seed, out_path, on_night=lambda: progress.advance(task))
        out.print(f"wrote {out_path}: {json.dumps(params.get('metrics', {}))}")
        return

    from dagster import DagsterInstance

    from sunrise_assets.cli.nights import wait_with_daemon
    from sunrise_assets.lib.model_ops import fit_model as fit_in_process
    from sunrise_assets.lib.model_ops import fit_model_queued

    settings.use_workdir(workdir or settings.workdir())
    with DagsterInstance.get() as instance:
        if in_process:
            report = fit_in_process(instance)
        else:
            # Ctrl-C or SIGTERM: the run is cancelled or left like ingest's (wait_for), before the
            # daemon child stops.
            report, _ = wait_with_daemon(
                instance,
                lambda daemon, on_work: fit_model_queued(instance, daemon=daemon, on_work=on_work),
                what="fit-model",
            )
    if report.error or report.version is None:
        raise UserError(f"fitting failed (run {report.run_id}): {report.error}")
    _print_card(report.version)
    out.print(f"run {report.run_id}; promote it with: [bold]sunrise model promote {report.version}[/]")


def _print_card(version: str) -> None:
    from sunrise_assets.domain import model_store
    from sunrise_assets.domain.warehouse_training import card_markdown

    bucket = bucket_from_option(None)
    card = model_store.load_card(bucket, version)
    if card is None:
        raise UserError(f"model {version} has no model card in the bucket")
    from rich.markdown import Markdown

    out.print(Markdown(card_markdown(version, card)))


@model_app.command("card")
def card(
    version: Annotated[Optional[str], typer.Argument(help="Model version (default: production).")] = None,
    workdir: WorkdirOpt = None,
) -> None:
    """Print a model card: training data, held-out metrics."""
    from sunrise_assets.domain import model_store

    settings.use_workdir(workdir or settings.workdir())
    _print_card(version or model_store.production_version(bucket_from_option(None)))


@model_app.command("list")
def list_models(workdir: WorkdirOpt = None) -> None:
    """List the models in the bucket, production marked."""
    from rich.table import Table

    from sunrise_assets.domain import model_store

    settings.use_workdir(workdir or settings.workdir())
    bucket = bucket_from_option(None)
    production = model_store.production_version(bucket)
    table = Table(title="sunalgo models")
    for column in ("version", "production", "training nights", "held-out nights", "accuracy", "kappa"):
        table.add_column(column)
    if production == model_store.shipped_version():
        table.add_row(production, "yes", "shipped with sunalgo (bootstrap)", "", "", "")
    for version in model_store.list_versions(bucket):
        card = model_store.load_card(bucket, version) or {}
        held = card.get("held_out", {})
        table.add_row(
            version,
            "yes" if version == production else "",
            str(card.get("training", {}).get("nights", "")),
            str(held.get("n_nights", "")),
            "" if held.get("accuracy") is None else f"{held['accuracy']:.3f}",
            "" if held.get("kappa_5class") is None else f"{held['kappa_5class']:.3f}",
        )
    out.print(table)


@model_app.command("promote")
def promote(
    version: Annotated[str, typer.Argument(help="Model version to make production (see `sunrise model list`).")],
    workdir: WorkdirOpt = None,
) -> None:
    """Make a model production: gold and the warehouse become stale and automation re-runs them."""
    from dagster import DagsterInstance

    from sunrise_assets.domain import model_store
    from sunrise_assets.lib.model_ops import promote as do_promote

    settings.use_workdir(workdir or settings.workdir())
    bucket = bucket_from_option(None)
    try:
        model_store.check_version(version)
        with DagsterInstance.get() as instance:
            changed = do_promote(instance, bucket, version)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    if changed:
        out.print(
            f"model {version} is production: gold and the warehouse are stale; automation re-runs them "
            "(or `sunrise refresh --from gold`)"
        )
    else:
        out.print(f"model {version} already is production: nothing changes")
