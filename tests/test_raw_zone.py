"""The raw zone in a bucket of its own: a pipeline run with raw/ and raw_index/ in a local directory
and every other layer in GCS (fake-gcs-server). Only raw/ and raw_index/ land in the raw location,
and nothing of them (no raw path, no identifier) reaches the other bucket."""

from __future__ import annotations

from tests.conftest import use_embedded_workdir


def test_raw_and_derived_layers_in_two_buckets(tmp_path, fake_gcs, monkeypatch):
    from dagster import DagsterInstance

    from resources.bucket import BucketResource
    from sunrise_assets.lib.ingest import ingest
    from sunrise_assets.synthetic.generate import generate_bucket

    work = use_embedded_workdir(tmp_path / "work", monkeypatch)
    raw_dir = tmp_path / "phi-bucket"
    generation = generate_bucket(raw_dir, 2, seed=31)
    name = fake_gcs.create_bucket("sunrise-derived")
    derived_url = f"gs://{name}/training"
    # What the runs' resources read (code_location.make_resources).
    monkeypatch.setenv("SUNRISE_BUCKET", derived_url)
    monkeypatch.setenv("SUNRISE_RAW_BUCKET", str(raw_dir))
    bucket = BucketResource(url=derived_url, raw_url=str(raw_dir))
    with DagsterInstance.get() as instance:
        report = ingest(bucket, instance)
    nights = sorted(report.materialized)
    assert len(nights) == 2 and not report.failed, report.failed

    raw_files = sorted(p.relative_to(raw_dir).as_posix() for p in raw_dir.rglob("*") if p.is_file())
    assert raw_files and all(p.startswith(("raw/", "raw_index/")) for p in raw_files)
    assert {f"raw_index/{n}.json" for n in nights} <= set(raw_files)
    assert set(generation.files) <= set(raw_files)  # the delivered files, untouched, where they were

    blobs = {b.name: b for b in fake_gcs.client().list_blobs(name)}
    assert blobs and all(n.startswith("training/") for n in blobs)
    layers = {n.split("/")[1] for n in blobs}
    assert layers == {"bronze", "silver", "gold"}, layers  # nothing of raw/ or raw_index/
    for night in nights:
        for layer in ("bronze", "silver", "gold"):
            assert any(n.startswith(f"training/{layer}/{night}/") for n in blobs)
    # No raw path or identifier inside any derived object either.
    raw_strings = {s.encode() for s in generation.identifiers if len(s) >= 4}
    raw_strings |= {night.recording_path.encode() for night in generation.nights}
    for blob_name, blob in blobs.items():
        data = blob.download_as_bytes()
        leaked = [s for s in raw_strings if s in data]
        assert not leaked, f"{blob_name} holds raw strings"
    # The local work directory got no bucket either (both locations were given).
    assert not (work / "bucket").exists()


def test_the_embedded_default_keeps_one_directory(tmp_path, monkeypatch):
    from sunrise_assets import settings
    from sunrise_assets.defs.code_location import make_resources

    use_embedded_workdir(tmp_path / "work", monkeypatch)
    monkeypatch.delenv("SUNRISE_RAW_BUCKET", raising=False)
    bucket = make_resources()["bucket"]
    assert bucket.raw_url is None and bucket.url == settings.bucket_url() == str(tmp_path / "work" / "bucket")
    monkeypatch.setenv("SUNRISE_RAW_BUCKET", "gs://phi-bucket/sunrise")
    assert make_resources()["bucket"].raw_url == "gs://phi-bucket/sunrise"
