"""`sunrise fit-model`: sunalgo's model parameters."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from sunrise_assets import settings
from sunrise_assets.cli.console import (
    out,
    progress_bar,
)


def fit_model(
    nights: Annotated[int, typer.Option("--nights", min=4, help="Synthetic training nights.")] = 80,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed of the training nights (kept apart from the demo's).")
    ] = 20240501,
    out_path: Annotated[Path, typer.Option("--out", help="Where to write the model parameters.")] = settings.REPO_ROOT
    / "sunalgo"
    / "model_params"
    / "params.json",
) -> None:
    """Fit sunalgo's stage and respiratory-event model on synthetic nights, reproducibly."""
    # Small matrices: a multithreaded BLAS is slower here on 2 cores; numpy is not imported yet.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from sunrise_assets.synthetic.bootstrap_fit import fit_from_synthetic

    with progress_bar() as progress:
        task = progress.add_task("training nights", total=nights)
        params = fit_from_synthetic(nights, seed, out_path, on_night=lambda: progress.advance(task))
    out.print(f"wrote {out_path}: {json.dumps(params.get('metrics', {}))}")
