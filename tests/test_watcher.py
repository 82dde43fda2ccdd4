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
