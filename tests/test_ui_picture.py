"""Each night's gold materialization carries its picture: PSG hypnogram above sunalgo's, events
marked, embedded as an SVG data URI in Markdown metadata, with the key scores and the agreement."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
from dagster import AssetKey, AssetRecordsFilter

from sunrise_assets.domain.night_picture import HEIGHT_PX, WIDTH_PX, hypnogram_svg

DATA_URI = re.compile(r"^!\[[^\]]*\]\(data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)\)$")


SVG = "{http://www.w3.org/2000/svg}"


def _parse(svg: bytes) -> ET.Element:
    root = ET.fromstring(svg)  # well-formed XML, or this raises
    assert root.tag == f"{SVG}svg"
    return root


def test_every_night_of_psg_agreement_shows_its_picture_and_scores(ingested):
    instance = ingested["instance"]
    for night in ingested["report"].materialized:
        record = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=AssetKey("psg_agreement"), asset_partitions=[night]), limit=1
        ).records[0]
        metadata = record.asset_materialization.metadata
        assert list(metadata)[0] == "hypnogram", "the picture comes first"
        match = DATA_URI.match(metadata["hypnogram"].value)
        assert match, metadata["hypnogram"].value[:80]
        svg = base64.b64decode(match.group(1))
        root = _parse(svg)
        assert (root.get("width"), root.get("height")) == (str(WIDTH_PX), str(HEIGHT_PX))
        assert 2_000 < len(svg) < 60_000, len(svg)
        texts = " ".join(t.text or "" for t in root.iter(f"{SVG}text"))
        assert "PSG (technician): TST" in texts and "agreement with PSG: kappa" in texts, texts
        for key in (
            "psg_total_sleep_time_min",
            "sunalgo_total_sleep_time_min",
            "psg_sleep_efficiency_pct",
            "sunalgo_sleep_efficiency_pct",
            "psg_ahi",
            "sunalgo_ahi",
            "kappa_5class",
            "accuracy",
            "tst_difference_min",
        ):
            assert key in metadata, f"{night}: {key} missing"


def test_picture_is_deterministic_and_carries_no_timestamp():
    rng = np.random.default_rng(3)
    psg = np.repeat(rng.integers(0, 5, 60), 15).astype(np.int8)
    psg[:4] = -1
    predicted = np.roll(psg, 2)
    events = [(600.0, 25.0, "obstructive_apnea"), (3600.0, 40.0, "hypopnea"), (5000.0, 12.0, "central_apnea")]
    first = hypnogram_svg(psg, predicted, events, predicted == 2)
    again = hypnogram_svg(psg.copy(), predicted.copy(), list(events), predicted == 2)
    assert first == again
    root = _parse(first)
    assert not any(el.tag.endswith(("script", "foreignObject")) for el in root.iter()), "a picture, nothing active"
    assert b"matplotlib" not in first.lower() and b"<!--" not in first


def test_picture_draws_the_hypnogram_where_the_stages_are():
    """The step line visits each stage's row, breaks where unscored, and REM is drawn on its own."""
    psg = np.array([-1, -1, 0, 0, 1, 2, 3, 3, 4, 4, -1, 2, 2], dtype=np.int8)  # 13 epochs
    root = _parse(hypnogram_svg(psg, psg, [(60.0, 30.0, "hypopnea")], psg == 4))
    paths = [p.get("d") for p in root.iter(f"{SVG}path")]
    step = paths[0]
    assert step.count("M") == 2, f"one break for the unscored run in the middle: {step}"
    rem = [p for el in root.iter(f"{SVG}path") if el.get("stroke") == "#c2185b" for p in [el.get("d")]]
    assert rem[0].count("M") == 1 and rem[0].count("H") == 1, rem
    assert any(el.get("fill") == "#ff7f0e" for el in root.iter(f"{SVG}path")), "the hypopnea bar"
    labels = [t.text for t in root.iter(f"{SVG}text")]
    assert {"W", "REM", "N1", "N2", "N3", "hypopnea", "hours since lights off"} <= set(labels), labels


def test_sunalgo_stays_free_of_matplotlib():
    code = (
        "import sys, sunalgo, sunalgo.recording, sunalgo.preprocess, sunalgo.features, sunalgo.model, "
        "sunalgo.scores, sunalgo.agreement, sunalgo.labels; print('matplotlib' in sys.modules)"
    )
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        == "False"
    )
