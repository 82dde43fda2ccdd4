"""Each night's gold materialization carries its picture: PSG hypnogram above sunalgo's, events
marked, embedded as a PNG data URI in Markdown metadata, with the key scores and the agreement."""

from __future__ import annotations

import base64
import re
import struct
import subprocess
import sys

import numpy as np
from dagster import AssetKey, AssetRecordsFilter

from sunrise_assets.hypnogram_plot import HEIGHT_PX, WIDTH_PX, hypnogram_png

DATA_URI = re.compile(r"^!\[[^\]]*\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)$")


def _png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", png[16:24])


def _chunks(png: bytes) -> list[bytes]:
    out, pos = [], 8
    while pos < len(png):
        length = struct.unpack(">I", png[pos:pos + 4])[0]
        out.append(png[pos + 4:pos + 8])
        pos += 12 + length
    return out


def test_every_night_of_psg_agreement_shows_its_picture_and_scores(ingested):
    instance = ingested["instance"]
    for night in ingested["report"].materialized:
        record = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=AssetKey("psg_agreement"), asset_partitions=[night]), limit=1).records[0]
        metadata = record.asset_materialization.metadata
        assert list(metadata)[0] == "hypnogram", "the picture comes first"
        match = DATA_URI.match(metadata["hypnogram"].value)
        assert match, metadata["hypnogram"].value[:80]
        png = base64.b64decode(match.group(1))
        assert _png_size(png) == (WIDTH_PX, HEIGHT_PX)
        assert 5_000 < len(png) < 60_000, len(png)
        for key in ("psg_total_sleep_time_min", "sunalgo_total_sleep_time_min", "psg_sleep_efficiency_pct",
                    "sunalgo_sleep_efficiency_pct", "psg_ahi", "sunalgo_ahi", "kappa_5class", "accuracy",
                    "tst_difference_min"):
            assert key in metadata, f"{night}: {key} missing"


def test_picture_is_deterministic_and_carries_no_timestamp():
    rng = np.random.default_rng(3)
    psg = np.repeat(rng.integers(0, 5, 60), 15).astype(np.int8)
    psg[:4] = -1
    predicted = np.roll(psg, 2)
    events = [(600.0, 25.0, "obstructive_apnea"), (3600.0, 40.0, "hypopnea"), (5000.0, 12.0, "central_apnea")]
    first = hypnogram_png(psg, predicted, events, predicted == 2)
    again = hypnogram_png(psg.copy(), predicted.copy(), list(events), predicted == 2)
    assert first == again
    assert b"tEXt" not in _chunks(first) and b"tIME" not in _chunks(first)
    assert b"Software" not in first and b"matplotlib" not in first.lower()


def test_sunalgo_stays_free_of_matplotlib():
    code = ("import sys, sunalgo, sunalgo.recording, sunalgo.preprocess, sunalgo.features, sunalgo.model, "
            "sunalgo.scores, sunalgo.agreement, sunalgo.labels; print('matplotlib' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
