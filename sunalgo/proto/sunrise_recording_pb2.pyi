from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SensorBlock(_message.Message):
    __slots__ = ("sample_rate_hz", "scale", "unit", "samples")
    SAMPLE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    sample_rate_hz: float
    scale: float
    unit: str
    samples: bytes
    def __init__(self, sample_rate_hz: _Optional[float] = ..., scale: _Optional[float] = ..., unit: _Optional[str] = ..., samples: _Optional[bytes] = ...) -> None: ...

class PatientBlock(_message.Message):
    __slots__ = ("name", "birth_date", "patient_ref", "site", "note")
    NAME_FIELD_NUMBER: _ClassVar[int]
    BIRTH_DATE_FIELD_NUMBER: _ClassVar[int]
    PATIENT_REF_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    name: str
    birth_date: str
    patient_ref: str
    site: str
    note: str
    def __init__(self, name: _Optional[str] = ..., birth_date: _Optional[str] = ..., patient_ref: _Optional[str] = ..., site: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class Recording(_message.Message):
    __slots__ = ("recording_id", "device_serial", "firmware", "start_time", "accelerometer", "gyroscope", "patient")
    RECORDING_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_SERIAL_FIELD_NUMBER: _ClassVar[int]
    FIRMWARE_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    ACCELEROMETER_FIELD_NUMBER: _ClassVar[int]
    GYROSCOPE_FIELD_NUMBER: _ClassVar[int]
    PATIENT_FIELD_NUMBER: _ClassVar[int]
    recording_id: str
    device_serial: str
    firmware: str
    start_time: str
    accelerometer: SensorBlock
    gyroscope: SensorBlock
    patient: PatientBlock
    def __init__(self, recording_id: _Optional[str] = ..., device_serial: _Optional[str] = ..., firmware: _Optional[str] = ..., start_time: _Optional[str] = ..., accelerometer: _Optional[_Union[SensorBlock, _Mapping]] = ..., gyroscope: _Optional[_Union[SensorBlock, _Mapping]] = ..., patient: _Optional[_Union[PatientBlock, _Mapping]] = ...) -> None: ...
