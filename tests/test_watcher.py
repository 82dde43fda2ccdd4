"""The wait loop of `sunrise ingest` (lib.queued_work.Watcher) polls the instance every 0.5 s while
the runs use the cores: it reports the nights done as the instance has them, and reads them again
only after a new event."""

from __future__ import annotations

from dagster import AssetKey, AssetMaterialization, DagsterInstance

from sunrise_assets.lib.queued_work import Watcher, event_cursor

FINALS = (AssetKey("night_scores"), AssetKey("training_epochs"))


def test_a_poll_reports_the_nights_done_and_reads_them_again_only_after_a_new_event(tmp_path, monkeypatch):
    with DagsterInstance.local_temp(str(tmp_path)) as instance:
        instance.add_dynamic_partitions("nights", ["n1", "n2", "n3"])
        instance.report_runless_asset_event(AssetMaterialization(FINALS[0], partition="n3"))  # before the cursor
        watcher = Watcher(instance, [], {"n1", "n2", "n3"}, FINALS, event_cursor(instance))
        reads = []
        original = instance.get_materialized_partitions

        def counted(*args, **kwargs):
            reads.append(args)
            return original(*args, **kwargs)

        monkeypatch.setattr(instance, "get_materialized_partitions", counted)
        assert watcher.poll().done == set()
        for key in FINALS:
            instance.report_runless_asset_event(AssetMaterialization(key, partition="n1"))
        assert watcher.poll().done == {"n1"}

        before = len(reads)
        assert watcher.poll().done == {"n1"}
        assert len(reads) == before, "nothing new in the event log: the nights done are not read again"

        instance.report_runless_asset_event(AssetMaterialization(FINALS[0], partition="n2"))
        assert watcher.poll().done == {"n1"}  # one final asset of two
        instance.report_runless_asset_event(AssetMaterialization(FINALS[1], partition="n2"))
        instance.report_runless_asset_event(AssetMaterialization(FINALS[1], partition="n3"))
        assert watcher.poll().done == {"n1", "n2"}  # n3's night_scores is older than the cursor
        assert len(reads) > before


def test_the_wait_between_polls_ends_when_a_run_changes(tmp_path):
    """Between two polls the command looks at the run storage every 0.05 s (one SQLite pragma): a
    run written (the last run ending, say) ends the wait at once; with nothing written it is whole."""
    import threading
    import time

    from dagster import DagsterRun, DagsterRunStatus

    from sunrise_assets.dagster_internals.daemon import RunStorageChanges
    from sunrise_assets.lib.queued_work import QueuedWork

    with DagsterInstance.local_temp(str(tmp_path)) as instance:
        changes = RunStorageChanges(instance)
        changes.changed()
        began = time.monotonic()
        QueuedWork._sleep(0.4, until=changes)
        assert time.monotonic() - began >= 0.39
        run = DagsterRun(job_name="j", run_id="r1", status=DagsterRunStatus.NOT_STARTED)
        writer = threading.Timer(0.2, lambda: instance.add_run(run))
        writer.start()
        began = time.monotonic()
        QueuedWork._sleep(10.0, until=changes)
        elapsed = time.monotonic() - began
        writer.join()
        assert 0.15 < elapsed < 2.0, elapsed
