"""`sunrise ui`: the Dagster UI on the work directory's instance."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Annotated

import typer

from sunrise_assets import settings
from sunrise_assets.cli.console import (
    WorkdirOpt,
    allow_demo_key,
)


def ui(workdir: WorkdirOpt = None, port: Annotated[int, typer.Option(help="Port of the web UI.")] = 3000) -> None:
    """Open the Dagster UI (dagster dev) on the work directory's instance.

    Without SUNRISE_PSEUDONYM_KEY the demo key is allowed (as for `sunrise demo`), loudly.
    """
    settings.use_workdir(workdir or settings.workdir())
    from sunrise_assets.domain.anonymise import KEY_ENV, load_key

    if not os.environ.get(KEY_ENV):
        allow_demo_key()
        load_key()  # prints the warning once, here
    cmd = [sys.executable, "-m", "dagster", "dev", "-w", str(settings.REPO_ROOT / "workspace.yaml"), "-p", str(port)]
    raise typer.Exit(subprocess.call(cmd, cwd=settings.REPO_ROOT))
