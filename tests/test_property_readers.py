"""Property-based tests (hypothesis) on every reader of outside bytes.

The contract of a reader: whatever the bytes, it either returns a well-formed result or raises ITS
format error (RecordingError, PsgFormatError) with a message; never another exception (IndexError,
OverflowError, MemoryError, UnicodeDecodeError...), which a pipeline would report as a bug, and never
a silently malformed result. Valid inputs round-trip.

Runs are bounded (max_examples ~100-200, no deadline) to keep the suite fast; a failure prints the
smallest input hypothesis found.
"""

from __future__ import annotations

import math
import xml.sax.saxutils as sax
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import edfio
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from sunalgo.labels import EVENT_TYPES, UNSCORED
from sunalgo.recording import PatientInfo, RecordingError, encode_recording, parse_recording
from sunrise_assets.domain.pairing import read_recording_start_and_duration, scan_bucket
from sunrise_assets.domain.psg_edf import PsgFormatError, read_edf_start_and_duration, read_psg_edf

BOUNDED = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SMALL = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ------------------------------------------------------------------------------ byte mutations


@st.composite
def mutated(draw, base: bytes) -> bytes:
    """``base`` with a few overwrites, insertions, deletions or a truncation."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(("overwrite", "insert", "delete", "truncate", "digit")))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if kind == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=8))
            data[i : i + len(chunk)] = chunk
        elif kind == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[i : i + draw(st.integers(1, 16))]
        elif kind == "truncate":
            del data[i:]
        else:  # a plausible-looking edit of a number: the kind a corrupt header holds
            data[i] = draw(st.sampled_from(b"0123456789-+. e"))
    return bytes(data)


# ----------------------------------------------------------------------------- Sunrise .pb


def _recording_bytes(n: int = 64, rate: float = 10.0, scale: float = 0.001, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    acc = rng.integers(-2000, 2000, size=(n, 3))
    gyro = rng.integers(-200, 200, size=(n, 3))
    return encode_recording(
        recording_id="r1",
        device_serial="SRB-12345",
        firmware="2.4.1",
        start_time=datetime(2024, 1, 2, 22, 0, tzinfo=timezone(timedelta(hours=1))),
        acc_counts=acc,
        gyro_counts=gyro,
        sample_rate_hz=rate,
        acc_scale=scale,
        gyro_scale=0.01,
        patient=PatientInfo("Jane Doe", "1970-01-01", "P-000001", "brussels-uh", "note"),
    )


VALID_PB = _recording_bytes()


def _check_recording(data: bytes) -> None:
    try:
        rec = parse_recording(data)
    except RecordingError as exc:
        assert str(exc)
        return
    for sensor in (rec.accelerometer, rec.gyroscope):
        assert sensor.counts.ndim == 2 and sensor.counts.shape[1] == 3 and sensor.n_samples > 0
        assert math.isfinite(sensor.sample_rate_hz) and sensor.sample_rate_hz > 0
        assert math.isfinite(sensor.scale) and sensor.scale > 0
        assert np.isfinite(sensor.physical()).all()
    assert rec.start_time.tzinfo is not None and rec.duration_s > 0


@BOUNDED
@given(st.binary(max_size=512))
def test_parse_recording_arbitrary_bytes(data):
    _check_recording(data)


@BOUNDED
@given(mutated(VALID_PB))
def test_parse_recording_mutated_bytes(data):
    _check_recording(data)


@BOUNDED
@given(mutated(VALID_PB))
def test_pairing_recording_header_mutated(data):
    """The scan's header-only read: a finite start and a positive finite duration, or RecordingError."""
    try:
        start, duration = read_recording_start_and_duration(data)
    except RecordingError as exc:
        assert str(exc)
        return
    assert start.tzinfo is not None and math.isfinite(duration) and duration > 0


@BOUNDED
@given(
    n=st.integers(1, 200),
    rate=st.floats(0.5, 1000, allow_nan=False),
    acc_scale=st.floats(1e-6, 10, allow_nan=False),
    offset_min=st.integers(-12 * 60, 14 * 60),
    seed=st.integers(0, 2**16),
    text=st.text(max_size=40),
)
def test_recording_round_trip(n, rate, acc_scale, offset_min, seed, text):
    rng = np.random.default_rng(seed)
    acc = rng.integers(-32768, 32768, size=(n, 3))
    gyro = rng.integers(-32768, 32768, size=(n, 3))
    start = datetime(2024, 3, 1, 23, 15, 7, tzinfo=timezone(timedelta(minutes=offset_min)))
    data = encode_recording(
        recording_id=text,
        device_serial=text,
        firmware=text,
        start_time=start,
        acc_counts=acc,
        gyro_counts=gyro,
        sample_rate_hz=rate,
        acc_scale=acc_scale,
        gyro_scale=0.01,
        patient=PatientInfo(text, "", text, "", text),
    )
    rec = parse_recording(data)
    np.testing.assert_array_equal(rec.accelerometer.counts, acc)
    np.testing.assert_array_equal(rec.gyroscope.counts, gyro)
    assert rec.start_time == start and rec.accelerometer.sample_rate_hz == rate and rec.accelerometer.scale == acc_scale
    assert rec.recording_id == text and rec.patient.name == text
    assert read_recording_start_and_duration(data) == (start, n / rate)


# ------------------------------------------------------------------------------------ EDF+


def _edf_bytes(annotations, *, seconds: int = 256, start: datetime = datetime(2024, 1, 2, 22, 0)) -> bytes:
    signal = edfio.EdfSignal(
        np.full(seconds, 95.0), 1.0, label="SpO2", physical_range=(0.0, 100.0), digital_range=(0, 1000)
    )
    return edfio.Edf(
        [signal],
        patient=edfio.Patient(code="P-000001", name="Doe_Jane"),
        recording=edfio.Recording(startdate=start.date()),
        starttime=start.time(),
        data_record_duration=32.0,
        annotations=[edfio.EdfAnnotation(*a) for a in annotations],
    ).to_bytes()


VALID_EDF = _edf_bytes(
    [
        (0.0, 120.0, "Sleep stage W"),
        (120.0, 90.0, "Sleep stage N2"),
        (210.0, 30.0, "Sleep stage R"),
        (130.0, 15.0, "Obstructive Apnea"),
        (160.0, 12.0, "Hypopnea"),
        (40.0, None, "Lights off"),
    ]
)


def _check_psg_labels(labels) -> None:
    assert labels.stages.dtype == np.int8 and labels.stages.ndim == 1
    assert set(np.unique(labels.stages).tolist()) <= {UNSCORED, 0, 1, 2, 3, 4}
    assert labels.epoch_s > 0 and math.isfinite(labels.epoch_s)
    assert {"onset_s", "duration_s", "type", "label"} <= set(labels.events.columns)
    assert np.isfinite(labels.events["onset_s"].to_numpy(np.float64)).all()
    assert set(labels.events["type"]) <= set(EVENT_TYPES) | {"other"}


def _check_edf(data: bytes) -> None:
    try:
        labels = read_psg_edf(data, source="raw PSG EDF+")
    except PsgFormatError as exc:
        assert str(exc).startswith("raw PSG EDF+")  # the message names the file it is about
        return
    _check_psg_labels(labels)
    assert labels.stages.size > 0


@BOUNDED
@given(mutated(VALID_EDF))
@example(VALID_EDF.replace(b"Lights off", b"Lumi\xe8re of"))  # a Latin-1 annotation
def test_edf_reader_mutated_bytes(data):
    _check_edf(data)


@SMALL
@given(st.binary(max_size=400))
def test_edf_reader_arbitrary_bytes(data):
    _check_edf(b"0       " + data)  # past the version check, into the header parser


_TEXTS = st.one_of(
    st.sampled_from(
        [
            "Sleep stage W",
            "Sleep stage 1",
            "Sleep stage 2",
            "Sleep stage 3",
            "Sleep stage 4",
            "Sleep stage R",
            "Sleep stage ?",
            "Sleep stage Q",
            "Movement time",
            "Obstructive Apnea",
            "Central apnea",
            "Hypopnea",
            "Apnea",
            "Lights off",
            "N2",
            "REM",
            "Stage X",
            "Arousal",
        ]
    ),
    st.text(st.characters(codec="utf-8", exclude_characters="\x00\x14\x15"), min_size=1, max_size=20),
)


@BOUNDED
@given(st.lists(st.tuples(st.floats(0, 250), st.one_of(st.none(), st.floats(0, 300)), _TEXTS), max_size=12))
def test_edf_reader_arbitrary_annotations(annotations):
    """Any annotation list edfio can write reads back as labels, or as a PsgFormatError (no stages,
    unknown stage label); stage runs expand to whole epochs from the file start."""
    try:
        data = _edf_bytes([(round(o, 3), None if d is None else round(d, 3), t) for o, d, t in annotations])
    except Exception:  # noqa: BLE001 - edfio refuses to write some lists; not the reader's concern
        assume(False)
    _check_edf(data)


@BOUNDED
@given(mutated(VALID_EDF[:256]))
def test_pairing_edf_header_mutated(header):
    """The scan's header-only EDF read: a start and a finite non-negative duration, or PsgFormatError."""
    try:
        start, duration = read_edf_start_and_duration(header, source="x.edf")
    except PsgFormatError as exc:
        assert "x.edf" in str(exc)
        return
    assert isinstance(start, datetime) and math.isfinite(duration) and duration >= 0


# ------------------------------------------------------------------------------- the scan


@dataclass
class _Obj:
    path: str
    generation: str
    size: int


class _MemoryBucket:
    def __init__(self, files: dict[str, bytes]):
        self.files = files

    def list(self, prefix: str = ""):
        for path in sorted(self.files):
            if path.startswith(prefix):
                yield _Obj(path, "1", len(self.files[path]))

    def read_bytes(self, path: str) -> bytes:
        return self.files[path]


@SMALL
@given(
    pb=st.one_of(mutated(VALID_PB), st.binary(max_size=64)), edf=st.one_of(mutated(VALID_EDF), st.binary(max_size=300))
)
def test_scan_never_raises_and_accounts_for_every_file(pb, edf):
    """Whatever the raw bytes, the scan returns: each file is paired, unpaired, or a problem naming it."""
    rec_path = "raw/sunrise/site-a/P-1/P-1_20240102.pb"
    study = "raw/psg/site-a/P-1/P-1_DOE_20240102"
    bucket = _MemoryBucket({rec_path: pb, f"{study}/P-1_DOE_20240102.edf": edf})
    result = scan_bucket(bucket)
    recs = [n.recording.path for n in result.nights] + [r.path for r in result.unpaired_recordings]
    studies = [n.study.dir for n in result.nights] + [s.dir for s in result.unpaired_studies]
    assert recs.count(rec_path) + sum(p.startswith(rec_path) for p in result.problems) == 1
    assert studies.count(study) + sum(p.startswith(study) for p in result.problems) == 1


# -------------------------------------------------- the other PSG formats (sunrise_assets.domain.psg_readers)

readers = pytest.importorskip("sunrise_assets.domain.psg_readers")


def _check_reader(read, data: bytes, **kwargs) -> None:
    try:
        labels = read(data, source="export.x", **kwargs)
    except readers.PsgFormatError as exc:
        assert "export.x" in str(exc) or "stage coding" in str(exc)  # a bad coding argument is not about the file
        return
    _check_psg_labels(labels)


_NUM = st.one_of(
    st.integers(-10, 40000).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", "nan", "inf", "-inf", "1e308", "1e-300", "30", "0", "-30", "abc", "1,5"]),
)
_CONCEPT = st.one_of(
    st.sampled_from(
        [
            "SDO:WakeState",
            "SDO:NonRapidEyeMovementSleep-N2",
            "SDO:RapidEyeMovementSleep",
            "SDO:ObstructiveApneaFinding",
            "SDO:HypopneaFinding",
            "Recording Start Time",
            "Stage 2 sleep|2",
            "Wake|0",
            "REM sleep|5",
            "Obstructive apnea|Obstructive Apnea",
            "SDO:NonRapidEyeMovementSleep-N7",
            "Deleted Hypopnea",
            "Stages|Stages",
        ]
    ),
    st.text(max_size=15),
)


@st.composite
def nsrr_xml(draw) -> bytes:
    events = []
    for _ in range(draw(st.integers(0, 6))):
        fields = {
            "EventType": draw(st.sampled_from(["", "Stages|Stages", "Respiratory|Respiratory"])),
            "EventConcept": draw(_CONCEPT),
            "Start": draw(_NUM),
            "Duration": draw(_NUM),
        }
        if draw(st.booleans()):
            fields["ClockTime"] = draw(st.sampled_from(["02.01.24 22.00.00", "00.00.00 22.00.00", "garbage", ""]))
        body = "".join(f"<{k}>{sax.escape(v)}</{k}>" for k, v in fields.items() if draw(st.integers(0, 9)))
        events.append(f"<ScoredEvent>{body}</ScoredEvent>")
    epoch = draw(st.one_of(st.just("30"), _NUM))
    return (
        f"<?xml version='1.0'?><PSGAnnotation><EpochLength>{sax.escape(epoch)}</EpochLength>"
        f"<ScoredEvents>{''.join(events)}</ScoredEvents></PSGAnnotation>"
    ).encode()


@st.composite
def profusion_xml(draw) -> bytes:
    stages = "".join(
        f"<SleepStage>{sax.escape(draw(st.one_of(st.sampled_from(['0', '1', '2', '3', '4', '5', '9']), _NUM)))}"
        "</SleepStage>"
        for _ in range(draw(st.integers(0, 8)))
    )
    events = "".join(
        f"<ScoredEvent><Name>{sax.escape(draw(_CONCEPT))}</Name><Start>{sax.escape(draw(_NUM))}</Start>"
        f"<Duration>{sax.escape(draw(_NUM))}</Duration></ScoredEvent>"
        for _ in range(draw(st.integers(0, 5)))
    )
    epoch = draw(st.one_of(st.just("30"), _NUM))
    return (
        f"<CMPStudyConfig><EpochLength>{sax.escape(epoch)}</EpochLength><SleepStages>{stages}</SleepStages>"
        f"<ScoredEvents>{events}</ScoredEvents></CMPStudyConfig>"
    ).encode()


_CLOCK = st.one_of(
    st.builds(
        lambda s: (datetime(2024, 1, 2, 22) + timedelta(seconds=s)).strftime("%d/%m/%Y %H:%M:%S"),
        st.integers(-100000, 100000),
    ),
    st.builds(lambda s: (datetime(2024, 1, 2, 22) + timedelta(seconds=s)).strftime("%H:%M:%S"), st.integers(0, 86399)),
    st.sampled_from(["", "31/02/2024 25:61:61", "2024-01-02T22:00:00", "garbage"]),
)


@st.composite
def noxturnal_csv(draw) -> bytes:
    rows = ["Start Time,End Time,Event,Duration,"]
    for _ in range(draw(st.integers(0, 8))):
        label = draw(
            st.one_of(
                st.sampled_from(
                    ["Wake", "N1", "N2", "N3", "REM", "A. Obstructive", "Hypopnée", "Désat", "Artefact", "Stage Z"]
                ),
                st.text(max_size=10),
            )
        )
        rows.append(
            ",".join(
                f'"{c}"' if any(x in c for x in ',"\n\r') else c
                for c in (draw(_CLOCK), draw(_CLOCK), label.replace('"', ""), draw(_NUM))
            )
            + ","
        )
    text = "\r\n".join(rows)
    return draw(st.sampled_from([text.encode("utf-8"), text.encode("utf-16"), b"\xef\xbb\xbf" + text.encode("utf-8")]))


@BOUNDED
@given(nsrr_xml())
@example(
    b"<PSGAnnotation><ScoredEvents><ScoredEvent><EventConcept>SDO:WakeState</EventConcept><Start>inf</Start></ScoredEvent></ScoredEvents></PSGAnnotation>"
)
@example(
    b"<PSGAnnotation><EpochLength>1e-300</EpochLength><ScoredEvents><ScoredEvent><EventConcept>SDO:WakeState</EventConcept><Start>0</Start><Duration>1</Duration></ScoredEvent></ScoredEvents></PSGAnnotation>"
)
def test_nsrr_xml_reader(data):
    _check_reader(readers.nsrr_xml.read_nsrr_xml, data)


@BOUNDED
@given(profusion_xml())
def test_profusion_xml_reader(data):
    _check_reader(readers.profusion_xml.read_profusion_xml, data)


@BOUNDED
@given(noxturnal_csv())
def test_noxturnal_csv_reader(data):
    _check_reader(readers.noxturnal_csv.read_noxturnal_csv, data)


@BOUNDED
@given(
    st.lists(
        st.one_of(
            st.sampled_from(["W", "N1", "N2", "N3", "R", "REM", "?", "0", "1", "2", "5", "-1", "9", "# c", "", "N7"]),
            st.text(max_size=6),
        ),
        max_size=20,
    ),
    st.sampled_from([None, "yasa", "rk-5rem", "0=W,1=N1", "bogus", "0=Z"]),
)
def test_hypnogram_text_reader(lines, coding):
    _check_reader(readers.hypnogram_text.read_hypnogram_text, "\n".join(lines).encode(), stage_coding=coding)


@BOUNDED
@given(st.one_of(st.binary(max_size=300), mutated(VALID_EDF), nsrr_xml(), profusion_xml(), noxturnal_csv()))
@example(b"\x00\x00\x01\x00\x00")  # UTF-16 without a BOM and an odd byte count
def test_read_labels_dispatch_arbitrary_bytes(data):
    """The format-detecting entry point: any bytes give labels or a PsgFormatError."""
    _check_reader(readers.read_labels, data, stage_coding="yasa")


# ------------------------------------------------------------------ absurd numbers, explicitly


@BOUNDED
@given(
    st.lists(
        st.tuples(
            st.floats(allow_nan=True, allow_infinity=True),
            st.floats(allow_nan=True, allow_infinity=True),
            st.integers(-1, 4),
        ),
        max_size=6,
    ),
    st.floats(0.5, 60),
    st.one_of(st.none(), st.integers(0, 10**12)),
)
def test_expand_runs_is_bounded(runs, epoch_s, n_epochs):
    """Stage runs at absurd onsets (1e300 s, inf, NaN) are an error, never gigabytes or a wrap-around."""
    from sunrise_assets.domain.psg_readers.psg_labels import MAX_STUDY_S, expand_runs

    onsets, durations, codes = (np.array([r[i] for r in runs], dtype=float) for i in range(3))
    try:
        stages = expand_runs(onsets, durations, codes.astype(np.int8), epoch_s, n_epochs, name="h.txt")
    except PsgFormatError as exc:
        assert str(exc).startswith("h.txt: ")
        return
    assert stages.size * epoch_s <= MAX_STUDY_S + epoch_s


def test_expand_runs_reads_a_missing_duration_as_no_epoch_without_numpy_warnings():
    """NaN and infinite durations are decided explicitly, not by numpy's undefined NaN -> int cast."""
    import warnings

    from sunrise_assets.domain.psg_readers.psg_labels import expand_runs

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stages = expand_runs(np.array([0.0, 30.0]), np.array([np.nan, 60.0]), np.array([1, 2], np.int8), 30.0)
        assert stages.tolist() == [UNSCORED, 2, 2]
        for onset, duration in ((np.inf, -np.inf), (1e308, 1e308), (0.0, np.inf)):
            with pytest.raises(PsgFormatError, match="h.txt: sleep stages reach beyond"):
                expand_runs(np.array([onset]), np.array([duration]), np.array([1], np.int8), 30.0, name="h.txt")


@pytest.mark.parametrize("duration", ["inf", "-inf", "nan", "1e400"])
def test_noxturnal_non_finite_duration_is_an_error_naming_its_line(duration):
    import warnings

    rows = ["Start Time,End Time,Event,Duration,", "02/01/2024 22:00:00,02/01/2024 22:00:30,N2,30,"]
    rows.append(f"02/01/2024 22:00:30,02/01/2024 22:01:00,N2,{duration},")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(PsgFormatError, match=rf"e.csv: line 3: duration '{duration}' is not a finite number"):
            readers.noxturnal_csv.read_noxturnal_csv("\r\n".join(rows).encode(), source="e.csv")


@pytest.mark.parametrize(
    "field, value",
    [
        (244, b"nan     "),
        (244, b"inf     "),
        (244, b"1e308   "),
        (236, b"-5      "),
        (236, b"99999999"),
        (168, b"31.02.24"),
        (176, b"25.61.00"),
    ],
)
def test_pairing_edf_header_absurd_fields(field, value):
    """Header-only read of a study: a NaN/infinite record length or a bad date is a PsgFormatError naming
    the file, a merely large length is a finite duration."""
    header = bytearray(VALID_EDF[:256])
    header[field : field + 8] = value
    try:
        _, duration = read_edf_start_and_duration(bytes(header), source="x.edf")
    except PsgFormatError as exc:
        assert "x.edf" in str(exc)
        return
    assert math.isfinite(duration) and duration >= 0


@pytest.mark.parametrize("rate", [float("inf"), float("nan"), 0.0, -10.0, 1e-300])
def test_pairing_recording_header_absurd_rate(rate):
    from sunalgo.recording import decode_message

    message = decode_message(VALID_PB)
    message.accelerometer.sample_rate_hz = rate
    data = message.SerializeToString()
    with pytest.raises(RecordingError, match="sample rate"):
        read_recording_start_and_duration(data)
    with pytest.raises(RecordingError, match="sample rate"):
        parse_recording(data)
