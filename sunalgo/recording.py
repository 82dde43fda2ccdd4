"""The raw Sunrise recording: protobuf schema in proto/sunrise_recording.proto.

Samples are mapped with ``np.frombuffer`` straight from the protobuf bytes fields: no per-sample
Python objects, no ``MessageToDict``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from google.protobuf.message import DecodeError

from sunalgo.proto import sunrise_recording_pb2 as pb

SAMPLE_DTYPE = np.dtype("<i2")


class RecordingError(ValueError):
    """The bytes are not a usable Sunrise recording; the message says why."""


@dataclass(frozen=True)
class PatientInfo:
    name: str
    birth_date: str
    patient_ref: str
    site: str
    note: str


@dataclass(frozen=True)
class SensorData:
    sample_rate_hz: float
    scale: float
    unit: str
    counts: np.ndarray  # (n, 3) int16, read-only view on the message bytes

    @property
    def n_samples(self) -> int:
        return int(self.counts.shape[0])

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.sample_rate_hz

    def physical(self) -> np.ndarray:
        """Samples in physical units (g or deg/s), float32."""
        return self.counts.astype(np.float32) * np.float32(self.scale)


@dataclass(frozen=True)
class Recording:
    recording_id: str
    device_serial: str
    firmware: str
    start_time: datetime  # timezone-aware, device clock
    accelerometer: SensorData
    gyroscope: SensorData
    patient: PatientInfo

    @property
    def duration_s(self) -> float:
        return min(self.accelerometer.duration_s, self.gyroscope.duration_s)

    @property
    def end_time(self) -> datetime:
        return self.start_time + timedelta(seconds=self.duration_s)


# Any sensor rate outside this range is a corrupt header, not a device setting.
SAMPLE_RATE_RANGE_HZ: tuple[float, float] = (0.1, 10_000.0)
# Both sensors start together; more than this difference in length means one lost samples (a gap),
# and every sample after the gap would be misaligned with the other sensor.
MAX_SENSOR_LENGTH_MISMATCH_S: float = 1.0


def check_sample_rate(name: str, rate: float) -> float:
    """A sensor's nominal rate, or RecordingError when it is not a finite rate in SAMPLE_RATE_RANGE_HZ."""
    lo, hi = SAMPLE_RATE_RANGE_HZ
    if not (np.isfinite(rate) and lo <= rate <= hi):
        raise RecordingError(f"{name}: sample rate must be a finite {lo:g}-{hi:g} Hz, got {rate!r}")
    return float(rate)


def _sensor(block: pb.SensorBlock, name: str) -> SensorData:
    check_sample_rate(name, block.sample_rate_hz)
    if not (block.scale > 0 and np.isfinite(block.scale)):
        raise RecordingError(f"{name}: scale must be positive, got {block.scale!r}")
    raw = block.samples
    if len(raw) == 0:
        raise RecordingError(f"{name}: no samples")
    if len(raw) % (3 * SAMPLE_DTYPE.itemsize):
        raise RecordingError(f"{name}: {len(raw)} sample bytes is not a whole number of x,y,z int16 triplets")
    counts = np.frombuffer(raw, dtype=SAMPLE_DTYPE).reshape(-1, 3)
    return SensorData(float(block.sample_rate_hz), float(block.scale), block.unit, counts)


def parse_start_time(text: str) -> datetime:
    """ISO 8601 with a UTC offset; a naive time is refused because the clock would be ambiguous."""
    try:
        start = datetime.fromisoformat(text)
    except ValueError as exc:
        raise RecordingError(f"start_time {text!r} is not ISO 8601") from exc
    if start.tzinfo is None:
        raise RecordingError(f"start_time {text!r} has no UTC offset")
    return start


def decode_message(data: bytes) -> pb.Recording:
    message = pb.Recording()
    try:
        message.ParseFromString(data)
    except DecodeError as exc:
        why = wire_problem(data, pb.Recording.DESCRIPTOR) or str(exc)
        raise RecordingError(f"not a Sunrise protobuf recording: {why}") from exc
    return message


def _varint(data: bytes, i: int) -> tuple[int | None, int]:
    value, shift = 0, 0
    while i < len(data) and shift < 64:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i
        shift += 7
    return (None if i >= len(data) else -1), i  # None: cut off by the end; -1: over-long (corrupt)


def wire_problem(data: bytes, descriptor, where: str = "") -> str | None:
    """Why protobuf bytes do not decode as ``descriptor`` (the parser only says that they do not):
    a field cut off by the end of the file, a text field that is not UTF-8, a corrupt field key.
    None when the wire structure looks sound. Names fields, never echoes their content."""
    fields = {f.number: f for f in descriptor.fields}
    i = 0
    while i < len(data):
        at = i
        key, i = _varint(data, i)
        if key is None:
            return f"truncated: a field key at byte {at} runs past the end of the data (a cut-off upload?)"
        if key < 0:
            return f"corrupt data: invalid field key at byte {at}"
        number, wire_type = key >> 3, key & 7
        field = fields.get(number)
        name = f"{where}{field.name}" if field is not None else f"{where}#{number}"
        if number == 0 or wire_type in (3, 4, 6, 7):
            return f"corrupt data: invalid field key {key} at byte {at}"
        if wire_type == 0:
            value, i = _varint(data, i)
            if value is None:
                return f"truncated: field {name} runs past the end of the data (a cut-off upload?)"
            if value < 0:
                return f"corrupt data: invalid value of field {name} at byte {at}"
            continue
        size = {1: 8, 5: 4}.get(wire_type)
        if size is None:  # length-delimited
            size, i = _varint(data, i)
            if size is None:
                return f"truncated: the length of field {name} runs past the end of the data (a cut-off upload?)"
            if size < 0:
                return f"corrupt data: invalid length of field {name} at byte {at}"
        if i + size > len(data):
            return f"truncated: field {name} announces {size} bytes but {len(data) - i} remain (a cut-off upload?)"
        payload, i = data[i : i + size], i + size
        if field is None or wire_type != 2:
            continue
        if field.type == field.TYPE_STRING:
            try:
                payload.decode("utf-8")
            except UnicodeDecodeError as exc:
                return f"field {name} is not UTF-8 text (byte {payload[exc.start]:#04x} at offset {exc.start})"
        elif field.type == field.TYPE_MESSAGE:
            inner = wire_problem(payload, field.message_type, f"{name}.")
            if inner:
                return inner
    return None


def parse_recording(data: bytes) -> Recording:
    """Decode one ``.pb`` file's bytes into arrays (zero-copy views on the bytes)."""
    if not data:
        raise RecordingError("empty file")
    message = decode_message(data)
    if not message.HasField("accelerometer") or not message.HasField("gyroscope"):
        raise RecordingError("recording lacks the accelerometer or the gyroscope block")
    p = message.patient
    recording = Recording(
        recording_id=message.recording_id,
        device_serial=message.device_serial,
        firmware=message.firmware,
        start_time=parse_start_time(message.start_time),
        accelerometer=_sensor(message.accelerometer, "accelerometer"),
        gyroscope=_sensor(message.gyroscope, "gyroscope"),
        patient=PatientInfo(p.name, p.birth_date, p.patient_ref, p.site, p.note),
    )
    acc_s, gyro_s = recording.accelerometer.duration_s, recording.gyroscope.duration_s
    if abs(acc_s - gyro_s) > MAX_SENSOR_LENGTH_MISMATCH_S:
        raise RecordingError(
            f"accelerometer holds {acc_s:.1f} s of samples but gyroscope {gyro_s:.1f} s: a wrong sample rate, or one "
            "sensor lost samples (a gap); the two can no longer be aligned"
        )
    return recording


def encode_recording(
    *,
    recording_id: str,
    device_serial: str,
    firmware: str,
    start_time: datetime,
    acc_counts: np.ndarray,
    gyro_counts: np.ndarray,
    sample_rate_hz: float,
    acc_scale: float,
    gyro_scale: float,
    patient: PatientInfo | None,
) -> bytes:
    """Serialise a recording; counts are (n, 3) integer arrays written as little-endian int16 bytes."""
    message = pb.Recording(
        recording_id=recording_id,
        device_serial=device_serial,
        firmware=firmware,
        start_time=start_time.isoformat(),
    )
    for block, counts, scale, unit in (
        (message.accelerometer, acc_counts, acc_scale, "g"),
        (message.gyroscope, gyro_counts, gyro_scale, "deg/s"),
    ):
        block.sample_rate_hz = sample_rate_hz
        block.scale = scale
        block.unit = unit
        block.samples = np.ascontiguousarray(counts, dtype=SAMPLE_DTYPE).tobytes()
    if patient is not None:
        message.patient.CopyFrom(
            pb.PatientBlock(
                name=patient.name,
                birth_date=patient.birth_date,
                patient_ref=patient.patient_ref,
                site=patient.site,
                note=patient.note,
            )
        )
    return message.SerializeToString(deterministic=True)
