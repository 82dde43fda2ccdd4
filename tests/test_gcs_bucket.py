"""BucketResource on both backends: a local directory and GCS (fake-gcs-server, started by the tests)."""

from __future__ import annotations

import hashlib
import itertools
import time

import pytest

from resources.bucket import BucketResource, ConcurrentWriteError, split_gcs_url

_names = itertools.count()


@pytest.fixture
def gcs_bucket(fake_gcs):
    name = fake_gcs.create_bucket(f"sunrise-test-{next(_names)}")
    return BucketResource(url=f"gs://{name}/training", list_page_size=2)


@pytest.fixture(params=["local", "gcs"])
def bucket(request, tmp_path):
    if request.param == "local":
        return BucketResource(url=str(tmp_path / "bucket"))
    return request.getfixturevalue("gcs_bucket")


def test_split_gcs_url():
    assert split_gcs_url("gs://b/a/b/") == ("b", "a/b")
    assert split_gcs_url("gs://b") == ("b", "")
    with pytest.raises(ValueError):
        split_gcs_url("gs:///x")


def test_round_trip_list_exists_delete(bucket):
    payloads = {f"gold/n{i}/f{j}.bin": bytes([i, j]) * (i + 1) for i in range(3) for j in range(3)}
    payloads["raw_index/a.json"] = b"{}"
    for path, data in payloads.items():
        info = bucket.write_bytes(path, data)
        assert info.path == path and info.size == len(data) and info.md5 == hashlib.md5(data).hexdigest()
    for path, data in payloads.items():
        assert bucket.exists(path) and bucket.read_bytes(path) == data
    assert not bucket.exists("gold/n9/none.bin")
    with pytest.raises(FileNotFoundError):
        bucket.read_bytes("gold/n9/none.bin")

    listed = list(bucket.list("gold"))
    assert [o.path for o in listed] == sorted(p for p in payloads if p.startswith("gold/"))
    assert [o.path for o in bucket.list("gold/n1/")] == ["gold/n1/f0.bin", "gold/n1/f1.bin", "gold/n1/f2.bin"]
    assert sorted(o.path for o in bucket.list()) == sorted(payloads)
    assert list(bucket.list("gol")) == []  # a prefix is a folder, not a string prefix
    for o in listed:
        assert o.size == len(payloads[o.path]) and o.generation and abs(o.updated - time.time()) < 600

    assert bucket.delete_prefix("gold/n1") == 3
    assert not bucket.exists("gold/n1/f0.bin") and bucket.exists("gold/n2/f0.bin")
    with pytest.raises(ValueError):
        bucket.write_bytes("../escape", b"x")


def test_gcs_listing_is_paginated_and_exposes_versions(gcs_bucket, fake_gcs):
    for i in range(7):  # page size 2: four pages, all followed
        gcs_bucket.write_bytes(f"raw/site/p{i}/rec.pb", f"recording {i}".encode())
    objects = list(gcs_bucket.list("raw"))
    assert [o.path for o in objects] == [f"raw/site/p{i}/rec.pb" for i in range(7)]
    blob = fake_gcs.client().bucket(split_gcs_url(gcs_bucket.url)[0]).get_blob("training/raw/site/p3/rec.pb")
    assert objects[3].generation == str(blob.generation)
    assert objects[3].md5 == hashlib.md5(b"recording 3").hexdigest()
    assert objects[3].updated == blob.updated.timestamp()
    assert gcs_bucket.info("raw/site/p3/rec.pb") == objects[3]
    assert gcs_bucket.info("raw/none") is None
    assert gcs_bucket.is_available()


def test_gcs_identical_rewrite_keeps_the_generation_and_a_change_replaces_it(gcs_bucket):
    first = gcs_bucket.write_bytes("silver/n/signals.parquet", b"v1")
    assert gcs_bucket.write_bytes("silver/n/signals.parquet", b"v1").generation == first.generation
    second = gcs_bucket.write_bytes("silver/n/signals.parquet", b"v2")
    assert second.generation != first.generation and gcs_bucket.read_bytes("silver/n/signals.parquet") == b"v2"


def test_gcs_concurrent_writer_is_never_clobbered_silently(gcs_bucket, fake_gcs, monkeypatch):
    """Another writer sneaks in between our generation read and our upload: we fail, it survives."""
    from google.cloud.storage import Blob

    path = "gold/n/clinical_scores.json"
    gcs_bucket.write_bytes(path, b"ours v1")
    other = fake_gcs.client().bucket(split_gcs_url(gcs_bucket.url)[0])
    original = Blob.upload_from_string
    sneaked = []

    def racing_upload(self, data, *args, **kwargs):
        if not sneaked:
            sneaked.append(True)
            other.blob(f"training/{path}").upload_from_string(b"theirs")  # the other writer wins the race
        return original(self, data, *args, **kwargs)

    monkeypatch.setattr(Blob, "upload_from_string", racing_upload)
    with pytest.raises(ConcurrentWriteError, match="another writer"):
        gcs_bucket.write_bytes(path, b"ours v2")
    monkeypatch.setattr(Blob, "upload_from_string", original)
    assert gcs_bucket.read_bytes(path) == b"theirs"


def test_gcs_generation_preconditions(gcs_bucket):
    path = "bronze/n/manifest.json"
    created = gcs_bucket.replace_bytes(path, b"a", expected_generation=None)
    with pytest.raises(ConcurrentWriteError):  # create-only, but it exists with other content
        gcs_bucket.replace_bytes(path, b"b", expected_generation=None)
    # A retried writer whose first attempt landed: same bytes, so it is not a conflict.
    assert gcs_bucket.replace_bytes(path, b"a", expected_generation=None).generation == created.generation
    updated = gcs_bucket.replace_bytes(path, b"b", expected_generation=created.generation)
    with pytest.raises(ConcurrentWriteError):  # stale generation, different content
        gcs_bucket.replace_bytes(path, b"c", expected_generation=created.generation)
    assert gcs_bucket.read_bytes(path) == b"b" and gcs_bucket.info(path).generation == updated.generation


def test_local_backend_details(tmp_path):
    bucket = BucketResource(url=str(tmp_path / "b"))
    bucket.write_bytes("a/x.bin", b"x")
    (tmp_path / "b" / "a" / ".tmp-half-written").write_bytes(b"partial")
    assert [o.path for o in bucket.list("a")] == ["a/x.bin"]
    assert bucket.info("a/x.bin").md5 == hashlib.md5(b"x").hexdigest()
    assert bucket.local_path("a/x.bin") == tmp_path / "b" / "a" / "x.bin"
    assert bucket.is_available() and not bucket.is_gcs
    with pytest.raises(ValueError):
        _ = BucketResource(url="gs://b/p").root
