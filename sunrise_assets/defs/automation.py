"""Declarative automation: downstream layers follow by themselves.

`follows_upstream` is Dagster's `eager()` with two changes. A new code version (e.g. a sunalgo
release) requests every partition of the asset once. And `newly_missing` is left out: new nights
arrive through the sensor in runs that cover the whole chain, and Dagster does not see a
partition of a multi-night (ranged) run as in progress, so a "missing" trigger would race those
runs and materialize the same nights twice. Parent updates made by a run that also targets the
child are ignored by `any_deps_updated`, so the sensor's runs trigger nothing more.
"""

import os

from dagster import AssetSelection, AutomationCondition, AutomationConditionSensorDefinition, DefaultSensorStatus


def follows_upstream(ignore_missing: list[str] | None = None) -> AutomationCondition:
    """``ignore_missing``: deps that may never have been materialized or observed without holding
    the asset back (the production model before any promotion); their updates still count."""
    missing = AutomationCondition.any_deps_missing()
    if ignore_missing:
        missing = missing.ignore(AssetSelection.assets(*ignore_missing))
    return (
        (AutomationCondition.any_deps_updated() | AutomationCondition.code_version_changed()).since_last_handled()
        & ~missing
        & ~AutomationCondition.any_deps_in_progress()
        & ~AutomationCondition.in_progress()
    ).with_label("eager or new code version")


def on_new_code_version() -> AutomationCondition:
    """For bronze: raw changes come through the sensor; only its own code change re-runs it."""
    return (
        AutomationCondition.code_version_changed().since_last_handled()
        & ~AutomationCondition.any_deps_missing()
        & ~AutomationCondition.in_progress()
    ).with_label("new code version")


def follows_every_night() -> AutomationCondition:
    """For an unpartitioned asset that reads every night of its partitioned deps (validation_summary).

    Any night of a dep updated (or the asset's code version changed) since it last ran, once no
    night of a dep is in progress (a run, or a backfill: a backfill of thousands of nights triggers
    it once, at its end) nor requested on this tick, and it is not running itself. Unlike
    `follows_upstream` a missing dep does not hold it back: some night always is (a new one not yet
    processed, a bad one), and the summary skips and counts those.
    """
    return (
        (AutomationCondition.any_deps_updated() | AutomationCondition.code_version_changed()).since_last_handled()
        # a dep requested now runs in its own run (other partitions): follow it, do not race it
        & ~AutomationCondition.any_deps_match(AutomationCondition.will_be_requested())
        & ~AutomationCondition.any_deps_in_progress()
        & ~AutomationCondition.in_progress()
    ).with_label("after every night's update has settled")


automation_sensor = AutomationConditionSensorDefinition(
    "sunrise_automation",
    target=AssetSelection.groups("bronze", "silver", "gold", "warehouse", "validation"),
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=int(os.environ.get("SUNRISE_AUTOMATION_INTERVAL_S", "30")),
    description=(
        "Evaluates the automation conditions of every layer: bronze -> warehouse follow by themselves, and the "
        "cross-night validation summary after them."
    ),
)
