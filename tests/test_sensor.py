"""The bucket sensor on the edge cases: late PSG, half-uploaded night, two nights of one subject,
re-uploads, and a cursor that resumes after a restart."""

import shutil

import pytest
from dagster import DagsterInstance, SensorResult, build_sensor_context
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from resources.bucket import BucketResource
from sunrise_assets.defs.sensors import evaluate
from sunrise_assets.synthetic.generate import generate_bucket
from tests.conftest import TEST_KEY


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.setenv("SUNRISE_PSEUDONYM_KEY", TEST_KEY)
    generation = generate_bucket(tmp_path / "bucket", 6, seed=21)
    with DagsterInstance.ephemeral() as instance:
        yield generation, BucketResource(url=str(tmp_path / "bucket")), instance


class Daemon:
    """Applies a tick's result the way the sensor daemon does, and keeps the cursor."""

    def __init__(self, instance, bucket, max_objects=100_000):
        self.instance, self.bucket, self.max_objects, self.cursor = instance, bucket, max_objects, None
        self.run_keys: set[str] = set()

    def tick(self):
        context = build_sensor_context(instance=self.instance, cursor=self.cursor)
        result = evaluate(context, self.bucket, max_objects=self.max_objects)
        assert isinstance(result, SensorResult)
        self.cursor = result.cursor
        for request in result.dynamic_partitions_requests or []:
            self.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        for event in result.asset_events or []:
            self.instance.report_runless_asset_event(event)
        fresh = [r for r in result.run_requests or [] if r.run_key not in self.run_keys]
        self.run_keys |= {r.run_key for r in result.run_requests or []}
        return result, fresh

    def nights(self):
        return self.instance.get_dynamic_partitions("nights")


def _range(request):
    return request.tags[ASSET_PARTITION_RANGE_START_TAG], request.tags[ASSET_PARTITION_RANGE_END_TAG]


def test_first_tick_registers_all_nights_in_one_batched_run_and_the_next_does_nothing(setup):
    generation, bucket, instance = setup
    daemon = Daemon(instance, bucket)
    _, runs = daemon.tick()
    nights = daemon.nights()
    assert len(nights) == len(generation.nights) == 6
    assert len(runs) == 1 and _range(runs[0]) == (nights[0], nights[-1])
    result, runs = daemon.tick()
    assert runs == [] and not result.dynamic_partitions_requests and not result.asset_events


def test_psg_arriving_later_makes_the_night(setup, tmp_path):
    generation, bucket, instance = setup
    late = generation.nights[0]
    study = tmp_path / "bucket" / late.study_dir
    shutil.move(study, tmp_path / "held_back")
    daemon = Daemon(instance, bucket)
    daemon.tick()
    assert len(daemon.nights()) == 5
    shutil.copytree(tmp_path / "held_back", study)  # the PSG upload lands
    _, runs = daemon.tick()
    assert len(daemon.nights()) == 6 and len(runs) == 1
    new = daemon.nights()[-1]
    assert _range(runs[0]) == (new, new)


def test_half_uploaded_edf_waits_until_complete(setup, tmp_path):
    generation, bucket, instance = setup
    edf = tmp_path / "bucket" / generation.nights[2].edf_path
    full = edf.read_bytes()
    edf.write_bytes(full[: len(full) // 2])
    daemon = Daemon(instance, bucket)
    _, runs = daemon.tick()
    assert len(daemon.nights()) == 5
    edf.write_bytes(full)
    _, runs = daemon.tick()
    assert len(daemon.nights()) == 6 and len(runs) == 1


def test_two_nights_of_one_subject_are_two_partitions(setup):
    generation, bucket, instance = setup
    refs = [(n.site, n.patient_ref) for n in generation.nights]
    repeated = {r for r in refs if refs.count(r) > 1}
    assert repeated, "the generator makes a second night for some patients"
    daemon = Daemon(instance, bucket)
    daemon.tick()
    subjects = [k.split("_")[0] for k in daemon.nights()]
    assert len(set(subjects)) == len(set(refs)) and len(subjects) == len(refs)


def test_identical_reupload_changes_nothing_but_a_changed_file_reruns_that_night_only(setup, tmp_path):
    generation, bucket, instance = setup
    daemon = Daemon(instance, bucket)
    daemon.tick()
    rec = tmp_path / "bucket" / generation.nights[3].recording_path
    data = rec.read_bytes()
    rec.write_bytes(data)  # identical re-upload: new generation, same bytes
    result, runs = daemon.tick()
    assert runs == [] and not result.asset_events
    rec.write_bytes(data[:-6] + bytes(6))  # one sample changed
    result, runs = daemon.tick()
    assert len(runs) == 1 and len(result.asset_events) == 1
    night = result.asset_events[0].partition
    assert _range(runs[0]) == (night, night)
    # The same change seen again (a repeated tick) asks for the same run key: no duplicate run.
    again = evaluate(build_sensor_context(instance=instance, cursor=None), bucket)
    assert {r.run_key for r in again.run_requests} <= daemon.run_keys


def test_cursor_bounds_each_tick_and_resumes_after_a_restart(setup):
    generation, bucket, instance = setup
    total = sum(1 for _ in bucket.list("raw/"))
    daemon = Daemon(instance, bucket, max_objects=5)
    ticks = 0
    while True:
        result, _ = daemon.tick()
        ticks += 1
        # A restart: a new daemon process only has the stored cursor string.
        restarted = Daemon(instance, bucket, max_objects=5)
        restarted.cursor, restarted.run_keys = daemon.cursor, daemon.run_keys
        daemon = restarted
        if '"after":""' in daemon.cursor:
            break
        assert ticks < 100
    assert ticks == -(-total // 5) or ticks == -(-total // 5) + 1
    assert sorted(daemon.nights()) == sorted(set(daemon.nights())) and len(daemon.nights()) == 6
