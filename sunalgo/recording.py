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


def _sensor(block: pb.SensorBlock, name: str) -> SensorData:
    if not (block.sample_rate_hz > 0 and np.isfinite(block.sample_rate_hz)):
        raise RecordingError(f"{name}: sample rate must be positive, got {block.sample_rate_hz!r}")
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
        raise RecordingError(f"not a Sunrise protobuf recording ({exc})") from exc
    return message


def parse_recording(data: bytes) -> Recording:
    """Decode one ``.pb`` file's bytes into arrays (zero-copy views on the bytes)."""
    if not data:
        raise RecordingError("empty file")
    message = decode_message(data)
    if not message.HasField("accelerometer") or not message.HasField("gyroscope"):
        raise RecordingError("recording lacks the accelerometer or the gyroscope block")
    p = message.patient
    return Recording(
        recording_id=message.recording_id,
        device_serial=message.device_serial,
        firmware=message.firmware,
        start_time=parse_start_time(message.start_time),
        accelerometer=_sensor(message.accelerometer, "accelerometer"),
        gyroscope=_sensor(message.gyroscope, "gyroscope"),
        patient=PatientInfo(p.name, p.birth_date, p.patient_ref, p.site, p.note),
    )


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
