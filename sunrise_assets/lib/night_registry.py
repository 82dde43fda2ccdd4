"""Registering nights with the Dagster instance: a partition per night, a raw data version per
new or changed night (an observation of ``raw_night``), so staleness in the UI tells the truth.

Both entry points, `sunrise ingest` and the bucket sensor, reconcile the raw zone first
(``domain.raw_nights.reconcile``), then register here.
"""

from __future__ import annotations

from dagster import AssetKey, AssetObservation, DagsterInstance

from sunrise_assets.dagster_internals.history_events import report_runless_observations
from sunrise_assets.dagster_internals.names import DATA_VERSION_TAG
from sunrise_assets.defs.partitions import nights_partitions
from sunrise_assets.domain.raw_nights import Reconciliation

RAW_NIGHT = AssetKey("raw_night")


def observations(reconciliation: Reconciliation) -> list[AssetObservation]:
    """One raw data version per new or changed night (Dagster derives staleness from it)."""
    wanted = set(reconciliation.to_run)
    return [
        AssetObservation(asset_key=RAW_NIGHT, partition=s.night, tags={DATA_VERSION_TAG: s.content_version})
        for s in reconciliation.sources
        if s.night in wanted
    ]


def register(reconciliation: Reconciliation, instance: DagsterInstance) -> list[str]:
    """Add missing partitions and record raw data versions on the instance; returns added keys."""
    existing = set(instance.get_dynamic_partitions(nights_partitions.name))
    added = [s.night for s in reconciliation.sources if s.night not in existing]
    if added:
        instance.add_dynamic_partitions(nights_partitions.name, added)
    report_runless_observations(instance, observations(reconciliation))
    return added
