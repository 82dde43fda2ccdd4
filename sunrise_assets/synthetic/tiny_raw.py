"""Tiny raw nights for the scale benchmark: the bucket layout and headers the pairing reads, no signal.

Night ``k`` is a Sunrise recording and a PSG study of one patient that overlap by an hour (the
pairing's whole test), in the layout sites deliver (see ``generate.py``)::

    raw/sunrise/<site>/<patient-ref>/<patient-ref>_<YYYYMMDD>.pb       (~4 KB: 1 h at 0.1 Hz)
    raw/psg/<site>/<patient-ref>/<patient-ref>_<YYYYMMDD>/<same>.edf   (~0.8 KB: one 1/60 Hz signal)

Patients have ``NIGHTS_PER_PATIENT`` nights on consecutive evenings, so a bucket of N nights holds
N / 5 patient folders per modality, as a real archive does. These nights pair, index and register
exactly like real ones; they cannot be computed (the bench never does).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from functools import cache

import numpy as np

from sunalgo.recording import encode_recording
from sunrise_assets.domain.object_store import ObjectStore
from sunrise_assets.synthetic.generate import SITES

NIGHTS_PER_PATIENT = 5
RATE_HZ = 0.1  # the lowest rate a recording may have: an hour is 360 samples
DURATION_S = 3600
FIRST_DAY = date(2015, 1, 5)


def patient_of_night(k: int) -> tuple[str, str]:
    """(site, patient-ref) of night ``k``: synthetic references, never real ones."""
    patient = k // NIGHTS_PER_PATIENT
    return SITES[patient % len(SITES)][0], f"SCALE{patient:07d}"


def night_paths(k: int) -> tuple[str, str]:
    """(recording path, study EDF path) of night ``k``."""
    site, ref = patient_of_night(k)
    day = _day(k)
    study = f"{ref}_{day:%Y%m%d}"
    return (
        f"raw/sunrise/{site}/{ref}/{ref}_{day:%Y%m%d}.pb",
        f"raw/psg/{site}/{ref}/{study}/{study}.edf",
    )


def write_night(bucket: ObjectStore, k: int) -> list[str]:
    """Write night ``k``'s two files; returns their paths."""
    rec_path, edf_path = night_paths(k)
    start = datetime.combine(_day(k), time(22, 0))
    bucket.write_bytes(rec_path, _recording(start, k))
    bucket.write_bytes(edf_path, _edf(start))
    return [rec_path, edf_path]


def _day(k: int) -> date:
    # A patient's nights are consecutive evenings; patients start on different days.
    patient, i = divmod(k, NIGHTS_PER_PATIENT)
    return FIRST_DAY + timedelta(days=(patient * 7) % 3000 + i)


def _recording(local_start: datetime, k: int) -> bytes:
    n = int(DURATION_S * RATE_HZ)
    counts = np.zeros((n, 3), dtype=np.int16)
    return encode_recording(
        recording_id=f"{k:016x}",
        device_serial=f"SCALE-{k % 100000:05d}",
        firmware="1.0.0",
        start_time=local_start.replace(tzinfo=timezone(timedelta(hours=1))),  # site-local wall clock
        acc_counts=counts,
        gyro_counts=counts,
        sample_rate_hz=RATE_HZ,
        acc_scale=1.0,
        gyro_scale=1.0,
        patient=None,
    )


def _edf(local_start: datetime) -> bytes:
    """The template EDF with this study's start date and time in the header (bytes 168-184)."""
    data = bytearray(_edf_template())
    data[168:184] = f"{local_start:%d.%m.%y}{local_start:%H.%M.%S}".encode("ascii")
    return bytes(data)


@cache
def _edf_template() -> bytes:
    import edfio

    records = DURATION_S // 60
    signal = edfio.EdfSignal(np.full(records, 95.0), 1 / 60, label="SpO2", physical_range=(0.0, 100.0))
    edf = edfio.Edf([signal], data_record_duration=60, starttime=time(22, 0), recording=None)
    edf.startdate = FIRST_DAY
    return edf.to_bytes()
