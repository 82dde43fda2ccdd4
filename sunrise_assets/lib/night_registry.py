"""Registering nights with the Dagster instance: a partition per night, a raw data version per
new or changed night (an observation of ``raw_night``), so staleness in the UI tells the truth.

Both entry points, `sunrise ingest` and the bucket sensor, reconcile the raw zone first
(``domain.raw_nights.reconcile``), then register here.
"""

from __future__ import annotations

from dagster import AssetKey, AssetObservation, DagsterInstance
from sqlalchemy.exc import IntegrityError

from sunrise_assets.dagster_internals.history_events import report_runless_observations
from sunrise_assets.dagster_internals.names import DATA_VERSION_TAG
from sunrise_assets.defs.partitions import nights_partitions
from sunrise_assets.domain.raw_nights import Reconciliation

RAW_NIGHT = AssetKey("raw_night")
# Two commands (or a command and the bucket sensor) registering the same new nights at once race
# between reading the partitions and adding them; the loser re-reads and adds what is still missing.
ADD_ATTEMPTS = 5


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
        add_partitions(instance, added)
    report_runless_observations(instance, observations(reconciliation))
    return added


def add_partitions(instance: DagsterInstance, nights: list[str]) -> None:
    """Add the nights' partitions, tolerating another process adding some of them at the same time."""
    for attempt in range(ADD_ATTEMPTS):
        try:
            # Dagster skips the keys it finds; a conflict means some were added after it looked.
            instance.add_dynamic_partitions(nights_partitions.name, nights)
            return
        except IntegrityError:
            if attempt == ADD_ATTEMPTS - 1:
                raise
