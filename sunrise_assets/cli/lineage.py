"""`sunrise lineage NIGHT`: where each layer's data of a night came from.

Dagster's own lineage is per asset; this reads, for one night (one partition), the latest
materialization of every asset from the instance: the object, its code and data versions, the run
and time that made it, and the data versions of what it was made from (the tags Dagster records on
each materialization). For gold it also names the model that predicted the night.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from sunrise_assets import settings
from sunrise_assets.cli.console import UserError, WorkdirOpt, out


def _objects(night: str) -> dict[str, str]:
    from sunrise_assets.domain import layout

    return {
        "raw_night": layout.raw_index(night),
        "bronze_recording": layout.bronze_recording(night),
        "bronze_psg": f"{layout.bronze_psg(night)}, {layout.bronze_psg_labels(night)}",
        "night_manifest": layout.bronze_manifest(night),
        "silver_signals": layout.silver_signals(night),
        "psg_hypnogram": layout.silver_hypnogram(night),
        "psg_respiratory_events": layout.silver_respiratory_events(night),
        "epoch_features": layout.gold_features(night),
        "epoch_predictions": layout.gold_predictions(night),
        "clinical_scores": layout.gold_scores(night),
        "psg_agreement": layout.gold_agreement(night),
        "epoch_features_long": "table epoch_features_long",
        "psg_epoch_labels": "table psg_epoch_labels",
        "training_epochs": "table training_epochs",
        "night_scores": "table night_scores",
    }


def night_lineage(instance: Any, night: str) -> list[dict[str, Any]]:
    """One entry per asset of the night, in layer order: what made it and from what."""
    from dagster import AssetKey, AssetRecordsFilter

    from sunrise_assets.dagster_internals.names import (
        CODE_VERSION_TAG,
        DATA_VERSION_TAG,
        INPUT_DATA_VERSION_TAG_PREFIX,
    )

    input_prefix = f"{INPUT_DATA_VERSION_TAG_PREFIX}/"
    objects = _objects(night)
    entries = []
    for name, path in objects.items():
        key = AssetKey(name)
        records_filter = AssetRecordsFilter(asset_key=key, asset_partitions=[night])
        fetch = instance.fetch_observations if name == "raw_night" else instance.fetch_materializations
        records = fetch(records_filter, limit=1).records
        entry: dict[str, Any] = {"asset": name, "object": path, "layer": _layer(name)}
        if records:
            record = records[0]
            event = record.event_log_entry.asset_materialization or record.event_log_entry.asset_observation
            tags = dict(event.tags or {})
            metadata = {k: getattr(v, "value", v) for k, v in (event.metadata or {}).items()}
            entry.update(
                run_id=record.run_id or "(observed)",
                time=datetime.fromtimestamp(record.timestamp, UTC).isoformat(timespec="seconds"),
                code_version=tags.get(CODE_VERSION_TAG),
                data_version=tags.get(DATA_VERSION_TAG),
                inputs={
                    k.removeprefix(input_prefix): v[:12] for k, v in sorted(tags.items()) if k.startswith(input_prefix)
                },
                model_version=metadata.get("model_version"),
            )
        entries.append(entry)
    return entries


def _layer(name: str) -> str:
    if name == "raw_night":
        return "raw"
    if name.startswith("bronze") or name == "night_manifest":
        return "bronze"
    if name in ("silver_signals", "psg_hypnogram", "psg_respiratory_events"):
        return "silver"
    if name in ("epoch_features", "epoch_predictions", "clinical_scores", "psg_agreement"):
        return "gold"
    return "warehouse"


def lineage(
    night: Annotated[str, typer.Argument(help="Night key, e.g. sub-3f9a1c2e_ses-20240117.")],
    workdir: WorkdirOpt = None,
) -> None:
    """Print, layer by layer, each object of a night: its code and data versions, the run and time that made it,
    what it was made from, and the model that predicted it."""
    from dagster import DagsterInstance
    from rich.table import Table

    from sunrise_assets.domain.anonymise import NIGHT_KEY_RE

    if not NIGHT_KEY_RE.fullmatch(night):
        raise UserError(f"{night!r} is not a night key")
    settings.use_workdir(workdir or settings.workdir())
    with DagsterInstance.get() as instance:
        entries = night_lineage(instance, night)
    if not any("run_id" in e for e in entries):
        raise UserError(f"night {night} has no history on this instance (`sunrise ingest` first)")
    table = Table(title=f"lineage of {night}")
    for column in ("layer", "asset", "object", "code", "data version", "run", "made at (UTC)", "made from"):
        table.add_column(column, overflow="fold")
    for e in entries:
        made_from = ", ".join(f"{k} {v}" for k, v in e.get("inputs", {}).items())
        if e.get("model_version"):
            made_from = f"model {e['model_version']}; " + made_from
        table.add_row(
            e["layer"],
            e["asset"],
            e["object"],
            e.get("code_version") or "",
            (e.get("data_version") or "")[:12],
            (e.get("run_id") or "not made")[:8],
            e.get("time", ""),
            made_from,
        )
    out.print(table)
    models = {e["model_version"] for e in entries if e.get("model_version")}
    if models:
        out.print(f"predictions made by model {', '.join(sorted(models))}")
