"""`sunrise candidate run | compare | promote | drop | list`: a model beside production on the same
nights, compared before anything of production changes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Annotated, Optional

import typer

from sunrise_assets import settings
from sunrise_assets.cli.console import UserError, WorkdirOpt, bucket_from_option, out, warehouse_from_settings

candidate_app = typer.Typer(
    help="Candidates: run a model beside production on the same nights, compare, promote or drop it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

NameArg = Annotated[str, typer.Argument(help="Candidate name: lower-case letters, digits and _.")]


def _materialize(name: str, what: str, *, in_process: bool = False) -> str:
    """One run of a candidate asset, submitted to the instance like `sunrise ingest`'s (its queue,
    launcher, monitoring and retries; the command's daemon child when no daemon serves the
    instance) and waited for, or with ``in_process`` executed here. Returns the run id (UserError
    when it fails)."""
    from dagster import DagsterInstance

    from sunrise_assets.cli.nights import wait_with_daemon
    from sunrise_assets.defs.candidate_assets import candidate_key
    from sunrise_assets.lib.model_ops import materialize, materialize_queued

    key = candidate_key(name, what)  # the code location reads the candidates' registry when it loads
    with DagsterInstance.get() as instance:
        if in_process:
            result, error = materialize(instance, key)
            run_id = result.run_id
        else:
            (run_id, error), daemon_elsewhere = wait_with_daemon(
                instance,
                lambda daemon, on_work: materialize_queued(
                    instance, key, trigger=f"candidate {what}", daemon=daemon, on_work=on_work
                ),
                what=f"candidate {'run' if what == 'gold' else 'compare'} {name}",
            )
            if error and daemon_elsewhere:
                error += (
                    " (a daemon that was already running knows a new candidate only once its code location "
                    "is reloaded: Reload in the UI's Deployment page, or run with --in-process)"
                )
    if error or run_id is None:
        raise UserError(f"candidate {name}: {what} failed (run {run_id}): {error or 'no run was made'}")
    return run_id


InProcessOpt = Annotated[
    bool, typer.Option("--in-process", help="Execute in this process instead of a run submitted to the instance.")
]


def _scored_nights(bucket, *, held_out_only: bool) -> list[str]:
    """Registered nights that production has scored; by default the held-out subjects' (the model never saw them)."""
    from dagster import DagsterInstance

    from sunalgo import subject_split
    from sunrise_assets.domain import layout

    with DagsterInstance.get() as instance:
        nights = instance.get_dynamic_partitions("nights")
    if held_out_only:
        nights = [n for n in nights if subject_split.is_held_out(subject_split.subject_of(n))]
    return [n for n in nights if bucket.exists(layout.gold_agreement(n))]


def _code_snapshot(sunalgo_ref: str | None, sunalgo_tree: Path | None, git_repo: Path | None):
    """The candidate's sunalgo package (None: production's), frozen now."""
    from sunrise_assets.domain import candidate_code

    if sunalgo_ref and sunalgo_tree:
        raise UserError("give --sunalgo-ref or --sunalgo-tree, not both")
    if sunalgo_tree is not None:
        return candidate_code.snapshot_tree(sunalgo_tree)
    if sunalgo_ref:
        return candidate_code.snapshot_git_ref(git_repo or settings.REPO_ROOT, sunalgo_ref)
    return None


@candidate_app.command("run")
def run(
    name: NameArg,
    params: Annotated[
        Optional[Path],
        typer.Option("--params", help="The candidate's sunalgo model parameters (JSON); default: production's."),
    ] = None,
    sunalgo_ref: Annotated[
        Optional[str],
        typer.Option(
            "--sunalgo-ref",
            help="A sunalgo code change: a git ref (branch, tag, commit) whose sunalgo/ computes the candidate's gold.",
        ),
    ] = None,
    sunalgo_tree: Annotated[
        Optional[Path],
        typer.Option("--sunalgo-tree", help="A sunalgo code change: a directory (working tree) holding a sunalgo/."),
    ] = None,
    git_repo: Annotated[
        Optional[Path], typer.Option("--git-repo", help="The repository of --sunalgo-ref (default: this one).")
    ] = None,
    nights: Annotated[
        Optional[list[str]], typer.Option("--nights", help="Nights to run it on (repeat); default: held-out subjects'.")
    ] = None,
    all_nights: Annotated[bool, typer.Option("--all-nights", help="Every night production has scored.")] = False,
    in_process: InProcessOpt = False,
    workdir: WorkdirOpt = None,
) -> None:
    """Compute gold for a candidate on chosen nights, in its own namespace (production untouched): other
    parameters (--params), other sunalgo code (--sunalgo-ref / --sunalgo-tree), or both."""
    from sunalgo import model
    from sunrise_assets.domain import candidate_code, candidates, layout, model_store

    settings.use_workdir(workdir or settings.workdir())
    bucket = bucket_from_option(None)
    if params is None and not (sunalgo_ref or sunalgo_tree):
        raise UserError("a candidate needs --params FILE, --sunalgo-ref REF or --sunalgo-tree DIR")
    try:
        candidates.check_name(name)
        snapshot = _code_snapshot(sunalgo_ref, sunalgo_tree, git_repo)
        if params is not None:
            document = json.loads(params.read_text())
            model.model_from_params(document, params)  # refuse unusable parameters before anything is written
    except (OSError, ValueError) as exc:
        raise UserError(str(exc)) from exc
    version = (
        model_store.save_params(bucket, document) if params is not None else model_store.production_version(bucket)
    )
    if nights and not all_nights:
        chosen = sorted(nights)
        missing = [n for n in chosen if not bucket.exists(layout.gold_agreement(n))]
    else:
        chosen, missing = _scored_nights(bucket, held_out_only=not all_nights), []
    if missing or not chosen:
        raise UserError(f"no production gold for {missing[:3] or 'any chosen night'}: ingest the nights first")
    source = f"{params.name} (model {version})" if params is not None else f"production's parameters (model {version})"
    if snapshot is not None:
        # The snapshot in the candidate's namespace: the run extracts it wherever it executes.
        bucket.write_bytes(candidates.code_archive_path(name), candidate_code.to_tar(snapshot.files))
    code = snapshot.identity if snapshot is not None else None
    candidates.save(bucket, candidates.Candidate(name, version, chosen, source, code))
    run_id = _materialize(name, "gold", in_process=in_process)
    out.print(
        f"candidate {name}: model {version}, {candidate_code.describe(code)}, on {len(chosen)} nights -> "
        f"{candidates.prefix(name)}gold/ and table candidate_scores (run {run_id[:8]}); compare it with: "
        f"[bold]sunrise candidate compare {name}[/]"
    )


@candidate_app.command("compare")
def compare(
    name: NameArg,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the report to this JSON file.")] = None,
    in_process: InProcessOpt = False,
    workdir: WorkdirOpt = None,
) -> None:
    """Compare a candidate with production on its nights: biases, limits of agreement, changes with paired
    bootstrap CIs over subjects, kappa and accuracy, verdicts, the nights that changed most."""
    from rich.markdown import Markdown

    from sunalgo import comparison
    from sunrise_assets.domain import candidate_code, candidates

    settings.use_workdir(workdir or settings.workdir())
    bucket = bucket_from_option(None)
    try:
        candidates.load(bucket, name)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    _materialize(name, "comparison", in_process=in_process)
    report = candidates.load_comparison(bucket, name)
    code = candidate_code.describe(report.get("candidate_code"))
    out.print(f"candidate {name}: model {report['candidate_model_version']}, {code}")
    out.print(Markdown(comparison.render_markdown(report)))
    if json_out is not None:
        json_out.write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
        out.print(f"wrote {json_out}")


@candidate_app.command("promote")
def promote(
    name: NameArg,
    params_only: Annotated[
        bool,
        typer.Option(
            "--params-only",
            help="For a code candidate: promote only its parameters (production keeps its own sunalgo code).",
        ),
    ] = False,
    workdir: WorkdirOpt = None,
) -> None:
    """Make the candidate's model production: automation then re-runs gold and the warehouse. A code
    candidate's sunalgo cannot be swapped in by a data promotion: merge its ref and deploy."""
    from dagster import DagsterInstance

    from sunrise_assets.domain import candidate_code, candidates
    from sunrise_assets.lib.model_ops import promote as promote_model

    settings.use_workdir(workdir or settings.workdir())
    bucket = bucket_from_option(None)
    try:
        candidate = candidates.load(bucket, name)
        if candidate.code and not params_only:
            raise UserError(
                f"candidate {name} runs other sunalgo code ({candidate_code.describe(candidate.code)}): production "
                "code is not swapped by a data promotion. Merge the ref (or the tree's change) and deploy; then "
                f"`sunrise candidate promote {name} --params-only` makes its parameters (model "
                f"{candidate.model_version}) production if they differ."
            )
        with DagsterInstance.get() as instance:
            changed = promote_model(instance, bucket, candidate.model_version)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    if changed:
        out.print(
            f"candidate {name} (model {candidate.model_version}) is production: gold and the warehouse are stale "
            "and automation re-runs them"
        )
    else:
        out.print(f"model {candidate.model_version} already is production: nothing changes")


@candidate_app.command("drop")
def drop(name: NameArg, workdir: WorkdirOpt = None) -> None:
    """Delete a candidate's namespace: its objects, its warehouse rows, its assets' history."""
    from dagster import DagsterInstance

    from sunrise_assets.defs.candidate_assets import candidate_key
    from sunrise_assets.domain import candidates

    settings.use_workdir(workdir or settings.workdir())
    bucket = bucket_from_option(None)
    try:
        candidate = candidates.load(bucket, name)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    objects = bucket.delete_prefix(candidates.prefix(name))
    local = settings.workdir() / "candidates" / name  # a code candidate's extracted sunalgo
    local_files = sum(1 for p in local.rglob("*") if p.is_file()) if local.exists() else 0
    shutil.rmtree(local, ignore_errors=True)
    rows = warehouse_from_settings().delete_candidate(name)
    with DagsterInstance.get() as instance:
        instance.wipe_assets([candidate_key(name, "gold"), candidate_key(name, "comparison")])
    out.print(
        f"dropped candidate {name}: {objects} objects under {candidates.prefix(name)}, {rows} rows of "
        f"candidate_scores, the history of its 2 assets"
        + (f", {local_files} files of its extracted sunalgo under {local}" if local_files else "")
        + f"; its model {candidate.model_version} stays in models/ "
        "(content-addressed, maybe shared)"
    )


@candidate_app.command("list")
def list_candidates(workdir: WorkdirOpt = None) -> None:
    """List the candidates: model, nights, whether compared."""
    from rich.table import Table

    from sunrise_assets.domain import candidate_code, candidates

    settings.use_workdir(workdir or settings.workdir())
    bucket = bucket_from_option(None)
    table = Table(title="candidates")
    for column in ("name", "model", "sunalgo", "nights", "compared"):
        table.add_column(column)
    for name in candidates.list_names(bucket):
        candidate = candidates.load(bucket, name)
        compared = bucket.exists(candidates.comparison_path(name))
        table.add_row(
            name,
            candidate.model_version,
            candidate_code.describe(candidate.code),
            str(len(candidate.nights)),
            "yes" if compared else "",
        )
    out.print(table)
