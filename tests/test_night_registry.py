"""Registering nights from several processes at once: the bucket sensor and two `sunrise ingest`
may add the same new nights' partitions at the same moment (seen in CI as an IntegrityError)."""

from __future__ import annotations

import multiprocessing

from dagster import DagsterInstance

from sunrise_assets.defs.partitions import nights_partitions
from sunrise_assets.lib import night_registry

PROCESSES = 4
TRIALS = 6


def _add(instance_dir: str, nights: list[str], ready, outcomes) -> None:
    with DagsterInstance.local_temp(instance_dir) as instance:
        instance.get_dynamic_partitions(nights_partitions.name)  # storage opened before the race
        ready.wait()
        try:
            night_registry.add_partitions(instance, nights)
            outcomes.put("ok")
        except Exception as error:  # noqa: BLE001 - the test reports whatever a process raised
            outcomes.put(f"{type(error).__name__}: {error}"[:300])


def test_processes_adding_the_same_nights_at_once_all_succeed(tmp_path):
    # Without the retry this raced into an IntegrityError in about half of the processes here.
    context = multiprocessing.get_context("fork")
    for trial in range(TRIALS):
        instance_dir = str(tmp_path / f"instance{trial}")
        (tmp_path / f"instance{trial}").mkdir()
        with DagsterInstance.local_temp(instance_dir) as instance:
            instance.get_dynamic_partitions(nights_partitions.name)
        nights = [f"sub-{trial:02d}{i:04d}_ses-20240101" for i in range(300)]
        ready, outcomes = context.Barrier(PROCESSES), context.Queue()
        arguments = (instance_dir, nights, ready, outcomes)
        processes = [context.Process(target=_add, args=arguments) for _ in range(PROCESSES)]
        for process in processes:
            process.start()
        results = [outcomes.get(timeout=120) for _ in processes]
        for process in processes:
            process.join(60)
        assert results == ["ok"] * PROCESSES
        with DagsterInstance.local_temp(instance_dir) as instance:
            assert sorted(instance.get_dynamic_partitions(nights_partitions.name)) == nights
