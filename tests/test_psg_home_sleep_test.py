"""Real home-sleep-test exports in NSRR XML (translated from an ARES-style device): unusable markers are
skipped and counted, vendor apnea/hypopnea concepts are typed, deleted events and technician notes
never reach bronze, and a stage or respiratory event with an unusable time is still a clear error.

The exports are built here from the patterns such files hold; every expected count comes from the
hand-written SPEC below (what each concept is, how many, which have an unusable time), not from the
reader's own tables, and is cross-checked against a regex count of the XML text."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from datetime import datetime
from xml.sax.saxutils import escape

import numpy as np
import pytest
from typer.testing import CliRunner

from sunrise_assets.cli.app import app
from sunrise_assets.defs.bronze import shifted_labels
from sunrise_assets.domain.input_validation import validate_labels
from sunrise_assets.domain.psg_readers import PsgFormatError, event_type, labels_scores, read_labels
from tests.conftest import real_file

RECORDING_S = 8 * 3600.0  # 8 h of recording: the AHI basis of a study without staging
CLOCK = "14.03.21 22.30.00"
RESP = "Respiratory|Respiratory"

# (EventType, EventConcept, how many, Duration text or None for a valid one, what the test expects:
#  a canonical type, or "skip:<key>" for an annotation the reader must skip and count under <key>).
SPEC: list[tuple[str, str, int, str | None, str]] = [
    ("", "Hypopnea 4% A|Hypopnea 4% A", 7, None, "hypopnea"),
    (RESP, "Hypopnea-55-2-0|Hypopnea-55-2-0", 5, None, "hypopnea"),
    ("", "Apnea-3506-2-0|Apnea-3506-2-0", 4, None, "untyped_apnea"),
    (RESP, "Apnea|Apnea", 3, None, "untyped_apnea"),
    (RESP, "Obstructive apnea|Obstructive Apnea", 2, None, "obstructive_apnea"),
    (RESP, "SpO2 desaturation|SpO2 desaturation", 6, None, "desaturation"),
    ("", "Unknown Event 4|Unknown Event 4", 6, "Invalid Duration", "skip:Unknown Event 4|Unknown Event 4"),
    ("", "Unknown Event 4|Unknown Event 4", 2, None, "other"),
    ("", "Alarm Loud|Alarm Loud", 3, None, "other"),
    (RESP, "SpO2 artifact|SpO2 artifact", 4, None, "other"),
    ("", "Quality-Bad|Quality-Bad", 2, "", "other"),  # no duration at all: a point marker, kept
    ("", "Quality-Poor|Quality-Poor", 1, "-12", "skip:Quality-Poor|Quality-Poor"),
    ("", "Pulse rate change|Increase-55-0-0", 3, None, "other"),
    ("", "Gross Movement|Gross Movement", 2, "Invalid Duration", "skip:Gross Movement|Gross Movement"),
    ("Position|Position", "Body position change to supine|Supine", 2, None, "other"),
    ("Technician Notes|Technician Notes", "Jane Doe got up to the bathroom", 1, None, "skip:technician note"),
    ("", "Technician Notes|Electrodes checked", 1, "Invalid Duration", "skip:technician note"),
    ("", "Deleted Hypopnea 4% A", 3, None, "skip:Deleted Hypopnea 4% A"),
    (
        "",
        "Deleted Apnea A-7200-0-0|Deleted Apnea A-7200-0-0",
        2,
        None,
        "skip:Deleted Apnea A-7200-0-0|Deleted Apnea A-7200-0-0",
    ),
]
RESPIRATORY = ("obstructive_apnea", "central_apnea", "mixed_apnea", "hypopnea", "untyped_apnea")


def _event(etype: str, concept: str, start: float, duration: str, nadir: float | None = None) -> str:
    parts = [
        f"<EventType>{escape(etype)}</EventType>" if etype else "",
        f"<EventConcept>{escape(concept)}</EventConcept>",
    ]
    parts += [f"<Start>{start:g}</Start>", f"<Duration>{escape(duration)}</Duration>"]
    if nadir is not None:
        parts.append(f"<SpO2Nadir>{nadir:g}</SpO2Nadir>")
    return "<ScoredEvent>" + "".join(parts) + "</ScoredEvent>"


def hst_export(spec: list[tuple[str, str, int, str | None, str]] = SPEC, seed: int = 0) -> bytes:
    """An NSRR PSGAnnotation XML of a home sleep test: Recording Start Time, then ``spec``'s events
    at random onsets inside the recording, in random order."""
    rng = random.Random(seed)
    events = []
    for etype, concept, n, duration, expected in spec:
        for _ in range(n):
            start = round(rng.uniform(60, RECORDING_S - 120), 1)
            dur = duration if duration is not None else f"{rng.uniform(10, 40):.1f}"
            nadir = rng.randint(80, 92) if expected == "desaturation" else None
            events.append(_event(etype, concept, start, dur, nadir))
    rng.shuffle(events)
    head = _event("", "Recording Start Time", 0, f"{RECORDING_S:g}").replace(
        "</ScoredEvent>", f"<ClockTime>{CLOCK}</ClockTime></ScoredEvent>"
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><PSGAnnotation><SoftwareVersion>Compumedics</SoftwareVersion>'
        f"<EpochLength>30</EpochLength><ScoredEvents>{head}{''.join(events)}</ScoredEvents></PSGAnnotation>"
    ).encode()


def expected_from_spec(spec=SPEC) -> tuple[Counter, Counter]:
    """(events per canonical type, skipped annotations per key) from the hand-written spec."""
    kinds, skipped = Counter(), Counter({"Recording Start Time": 1})
    for _etype, _concept, n, _duration, expected in spec:
        if expected.startswith("skip:"):
            skipped[expected[len("skip:") :]] += n
        else:
            kinds[expected] += n
    return kinds, skipped


def test_home_sleep_test_export_reads_with_markers_skipped_and_counted():
    data = hst_export()
    labels = read_labels(data, source="hst.xml")
    kinds, skipped = expected_from_spec()
    # Second route for the totals: every <ScoredEvent> of the text is an event or a skipped annotation.
    n_blocks = len(re.findall(r"<ScoredEvent>", data.decode()))
    assert n_blocks == sum(kinds.values()) + sum(skipped.values()) == 60
    assert not labels.has_staging and labels.recording_s == RECORDING_S
    assert labels.start == datetime(2021, 3, 14, 22, 30)
    assert {k: v for k, v in labels.event_counts().items() if v} == dict(kinds)
    assert kinds["hypopnea"] == 12 and kinds["untyped_apnea"] == 7 and kinds["other"] == 16
    assert labels.skipped_annotations == dict(skipped)
    reasons = {row["label"]: row["reason"] for row in labels.skipped()}
    assert reasons["Unknown Event 4|Unknown Event 4"] == "unusable time: Duration 'Invalid Duration' is not a number"
    assert reasons["Quality-Poor|Quality-Poor"] == "unusable time: Duration '-12' is negative"
    assert reasons["Deleted Hypopnea 4% A"] == "deleted in the scoring software"
    assert "technician note" in reasons and not any("Jane" in k or "Jane" in v for k, v in reasons.items())
    assert not any("Jane" in text or "Electrodes" in text for text in labels.events["label"])
    # The AHI counts every apnea (untyped included) and hypopnea per hour of recording: 21 over 8 h.
    assert labels_scores(labels)["ahi"] == pytest.approx((12 + 7 + 2) / 8.0)
    assert labels_scores(labels)["odi"] == pytest.approx(6 / 8.0)
    assert validate_labels(labels, "hst.xml") is labels


def test_bronze_keeps_canonical_events_only():
    labels = read_labels(hst_export(seed=4))
    start = datetime(2021, 3, 14, 22, 30)
    canonical = shifted_labels(labels, start, start)
    text = json.dumps(canonical)
    for never in ("Deleted", "Jane", "Electrodes", "Unknown Event", "Alarm", "technician"):
        assert never not in text, never
    kinds, _ = expected_from_spec()
    assert Counter(e["type"] for e in canonical["events"]) == +Counter({k: v for k, v in kinds.items() if k != "other"})
    assert canonical["dropped_other_events"] == kinds["other"]
    assert sum(e["type"] in RESPIRATORY for e in canonical["events"]) == 21


@pytest.mark.parametrize(
    "etype, concept, message",
    [
        (
            "Stages|Stages",
            "Stage 2 sleep|2",
            r"^bad\.xml: ScoredEvent 'Stage 2 sleep\|2' Duration 'Invalid Duration' is not a number$",
        ),
        ("", "SDO:NonRapidEyeMovementSleep-N2", r"ScoredEvent 'SDO:NonRapidEyeMovementSleep-N2' Duration 'Invalid "),
        ("", "Hypopnea 4% A|Hypopnea 4% A", r"^bad\.xml: ScoredEvent 'Hypopnea 4% A\|Hypopnea 4% A' Duration "),
        (RESP, "Apnea-3506-2-0|Apnea-3506-2-0", r"ScoredEvent 'Apnea-3506-2-0\|Apnea-3506-2-0' Duration 'Invalid"),
        (RESP, "Obstructive apnea|Obstructive Apnea", r"ScoredEvent 'Obstructive apnea\|Obstructive Apnea' Duration"),
    ],
)
def test_stage_or_respiratory_event_with_unusable_time_is_a_clear_error(etype, concept, message):
    spec = [*SPEC, (etype, concept, 1, "Invalid Duration", "error")]
    with pytest.raises(PsgFormatError, match=message):
        read_labels(hst_export(spec), source="bad.xml")


def _bad_start(text: str, concept: str) -> bytes:
    """``text`` with the Start of the first ``concept`` event made unusable ("n/a")."""
    pattern = rf"(<EventConcept>{re.escape(concept)}</EventConcept><Start>)[^<]*"
    out, n = re.subn(pattern, r"\g<1>n/a", text, count=1)
    assert n == 1
    return out.encode()


def test_unusable_start_skips_a_marker_but_refuses_a_respiratory_event():
    text = hst_export().decode()
    labels = read_labels(_bad_start(text, "Alarm Loud|Alarm Loud"))
    assert labels.skipped_annotations["Alarm Loud|Alarm Loud"] == 1
    assert labels.event_counts()["other"] == expected_from_spec()[0]["other"] - 1
    assert labels.skip_reasons["Alarm Loud|Alarm Loud"] == "unusable time: Start 'n/a' is not a number"
    with pytest.raises(PsgFormatError, match=r"ScoredEvent 'Hypopnea-55-2-0\|Hypopnea-55-2-0' Start 'n/a' is not a"):
        read_labels(_bad_start(text, "Hypopnea-55-2-0|Hypopnea-55-2-0"))


def test_a_file_without_a_usable_clock_is_refused():
    text = hst_export().decode()
    with pytest.raises(PsgFormatError, match=r"ClockTime 'late evening' is not dd\.mm\.yy HH\.MM\.SS"):
        read_labels(text.replace(CLOCK, "late evening").encode())
    with pytest.raises(PsgFormatError, match=r"ScoredEvent 'Recording Start Time' Duration 'Invalid Duration'"):
        read_labels(
            text.replace(f"<Duration>{RECORDING_S:g}</Duration>", "<Duration>Invalid Duration</Duration>").encode()
        )


# Vendor concept names and their canonical type, written out here (not read from the reader's table).
VENDOR = {
    "Hypopnea 4% A": "hypopnea",
    "Hypopnea 3% A|Hypopnea 3% A": "hypopnea",
    "Hypopnea 4%": "hypopnea",
    "Hypopnea-55-2-0": "hypopnea",
    "Hypopnea-3507-3-0|Hypopnea-3507-3-0": "hypopnea",
    "Apnea-3506-2-0": "untyped_apnea",
    "Apnea-55-1-1|Apnea-55-1-1": "untyped_apnea",
    "Apnea A-7100-0-0": "untyped_apnea",
    "Apnea|Apnea": "untyped_apnea",
    "SDO:ApneaFinding": "untyped_apnea",
    "Apnée": "untyped_apnea",
    "Central apnea|Central Apnea": "central_apnea",
    "Unknown Event 4|Unknown Event 4": "other",
    "Alarm Moderate": "other",
    "Quality-Marginal": "other",
    "Increase-56-0-0": "other",
    "Gross Movement": "other",
    "RERA": "other",
}


@pytest.mark.parametrize("concept, kind", VENDOR.items())
def test_vendor_concepts_map_to_canonical_types(concept, kind):
    assert event_type(concept) == kind


def test_real_nsrr_annotation_has_nothing_skipped_but_its_start():
    labels = read_labels(real_file("nsrr_xml", "nsrr_psgannotation", "100022_Compumedics.xml").read_bytes())
    assert labels.skipped() == [
        {"label": "Recording Start Time", "count": 1, "reason": "the recording's start and length, not an event"}
    ]
    assert labels.event_counts()["untyped_apnea"] == 0


def test_psg_inspect_json_shows_what_was_skipped_and_why(tmp_path):
    path = tmp_path / "hst.xml"
    path.write_bytes(hst_export(seed=7))
    result = CliRunner().invoke(app, ["psg", "inspect", str(path), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    kinds, skipped = expected_from_spec()
    assert {row["label"]: row["count"] for row in report["skipped"]} == dict(skipped)
    assert all(row["reason"] for row in report["skipped"])
    assert report["event_counts"]["untyped_apnea"] == 7 and report["event_counts"]["other"] == kinds["other"]
    assert report["epochs"] == 0 and report["scores"]["ahi"] == pytest.approx(21 / 8.0)
    human = CliRunner().invoke(app, ["psg", "inspect", str(path)])
    assert human.exit_code == 0, human.output
    assert (
        "skipped: Unknown Event 4|Unknown Event 4 x6 (unusable time: Duration 'Invalid Duration' is not a number)"
        in (human.stdout)
    )
    assert "Jane" not in human.stdout
    assert np.isfinite(report["scores"]["odi"])


def test_profusion_export_skips_unusable_markers_and_deleted_events_too():
    data = real_file("nsrr_xml", "compumedics_profusion", "100022.xml").read_bytes()
    base = read_labels(data)
    text = data.decode("latin-1")
    extra = (
        "<ScoredEvent><Name>Unknown Event 4</Name><Start>3000</Start>"
        "<Duration>Invalid Duration</Duration></ScoredEvent>"
        * 3
        + "<ScoredEvent><Name>Deleted Hypopnea 4% A</Name><Start>3100</Start><Duration>12</Duration></ScoredEvent>"
    )
    labels = read_labels(text.replace("<ScoredEvents>", "<ScoredEvents>" + extra, 1).encode("latin-1"))
    assert labels.event_counts() == base.event_counts() and np.array_equal(labels.stages, base.stages)
    assert labels.skipped_annotations == {"Unknown Event 4": 3, "Deleted Hypopnea 4% A": 1}
    # The first real hypopnea given an unusable duration: the file is refused, naming it.
    bad = re.sub(
        r"(<Name>Hypopnea</Name>\s*<Start>[^<]*</Start>\s*<Duration>)[^<]*", r"\g<1>Invalid Duration", text, count=1
    )
    with pytest.raises(PsgFormatError, match=r"^p\.xml: ScoredEvent 'Hypopnea' Duration 'Invalid Duration' is not a"):
        read_labels(bad.encode("latin-1"), source="p.xml")
