"""The runs' executor: Dagster's own (in-process by default), with the registered nights read once
per run instead of twice per step and once per night and asset.

Why: a 100-night run's bookkeeping grew with the archive (2.25 s at 2,000 nights, 8.5 s at 50,000
on PostgreSQL). py-spy on the run worker at 50,000 nights: 6.4 s of the run outside the asset
bodies in ``get_partition_keys_in_range`` of the nights' DynamicPartitionsDefinition (0.23 s at
2,000), 0.22 s a read of the 50,000 nights: before each step (its inputs' data versions,
``fetch_external_input_asset_version_info``, outside the step's own cache of
``night_batches.per_night``), once more in each step, and ``list.index`` over every night for each
night and asset of ``add_asset_metadata``. Wrapping the executor covers the whole plan's execution
in one ``partitions_read_once`` (``tests/test_run_partition_reads.py`` counts the reads).
"""

from __future__ import annotations

from collections.abc import Iterator

from dagster import DagsterEvent, Executor, ExecutorDefinition

from sunrise_assets.dagster_internals.step_events import partitions_read_once


class NightsReadOncePerRun(Executor):
    """Delegates everything to ``inner``; its execution of the plan reads the nights once."""

    def __init__(self, inner: Executor) -> None:
        self._inner = inner

    def execute(self, plan_context, execution_plan) -> Iterator[DagsterEvent]:
        with partitions_read_once(plan_context.instance):
            yield from self._inner.execute(plan_context, execution_plan)

    @property
    def retries(self):
        return self._inner.retries

    @property
    def step_dependency_config(self):
        return self._inner.step_dependency_config


def nights_read_once_per_run(inner: ExecutorDefinition) -> ExecutorDefinition:
    """``inner`` (same name, config and requirements, so run config and the UI are unchanged) whose
    runs read the dynamic partitions once."""
    create = inner.executor_creation_fn
    if create is None:
        raise ValueError(f"executor {inner.name!r} has no creation function to wrap")

    def create_executor(init_context) -> Executor:
        return NightsReadOncePerRun(create(init_context))

    return ExecutorDefinition(
        name=inner.name,
        config_schema=inner.config_schema,
        requirements=inner.get_requirements,
        executor_creation_fn=create_executor,
        description=inner.description,
    )
