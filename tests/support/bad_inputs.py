"""A corpus of bad raw inputs, each made from a generated night by breaking ONE thing in one file.

``build_corpus(root, n_good, seed)`` writes a generated bucket (``n_good`` good nights plus its
unpaired files) and, beside it, one copy of a template night per bad input, each under its own
patient folder (``raw/.../corpus-lab/BAD-NN/``) with one file broken. Every bad input says where its
failure belongs and what the message must say:

- ``night``: the pair is still a night (the scan cannot see the problem), so the night must fail in
  the pipeline, alone, with a message naming the night, the file (its role, or the bronze path) and
  the problem;
- ``problem``: the scan cannot read the file, so it is not a night; the scan's problem line names the
  raw file (raw layer, for `sunrise scan`) and the problem;
- ``unpaired``: the files are readable but do not make a night (no overlap): both are reported as
  unpaired, which is what they are;
- ``handled``: not an error at all (a free-text comment holding the patient's name, a Windows-1252
  export): the night must be materialized and no identifier may reach bronze.

Templates: night 0's scoring is EDF+ annotations, night 1's an NSRR XML export, night 2's a
Noxturnal CSV export (``generate_bucket(psg_formats=...)``), so the exports' bad inputs are covered.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import edfio
import numpy as np

from sunalgo.recording import decode_message
from sunrise_assets.synthetic.generate import GenerationReport, generate_bucket

SITE = "corpus-lab"
FORMATS = ("edf+", "nsrr-xml", "noxturnal-csv")  # scoring of generated nights 0, 1, 2
EDF, NSRR, NOX = 0, 1, 2
RECORDING = "raw Sunrise recording"
PSG = "raw PSG EDF+"
EXPORT = "raw PSG scoring export"
BRONZE_RECORDING = "bronze/{night}/recording.pb"  # silver reads the anonymised recording


@contextmanager
def scratch_dir(fallback: Path) -> Iterator[Path]:
    """A work directory in RAM (/dev/shm) when the machine has one, else ``fallback``; removed afterwards.

    Dagster's SQLite instance commits (and fsyncs) every event, ~60 ms each on a slow disk: a batch of
    45 nights then spends most of its time waiting for the disk, not running the pipeline.
    """
    base = Path("/dev/shm")
    if not (base.is_dir() and os.access(base, os.W_OK)):
        yield fallback
        return
    path = Path(tempfile.mkdtemp(prefix="sunrise-test-", dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@dataclass(frozen=True)
class BadInput:
    name: str
    what: str  # the one thing broken, in words
    expect: str  # "night" | "problem" | "unpaired" | "handled"
    file: str  # "recording" | "psg" | "scoring": the file broken
    says: tuple[str, ...]  # lower-case words the message must hold (the problem)
    role: str = ""  # for "night": the file the message must name (a role, or a bronze path template)
    mutate: Callable[[Case], None] = lambda case: None
    template: int = EDF  # which generated night is copied (its scoring format)


@dataclass
class Case:
    bad: BadInput
    index: int
    recording_path: str  # bucket-relative
    study_dir: str
    edf_path: str
    scoring_path: str | None  # the scoring export, when the template has one
    root: Path
    template_name: str  # the template patient's name (PHI that must never reach a message)

    @property
    def recording_file(self) -> Path:
        return self.root / self.recording_path

    @property
    def edf_file(self) -> Path:
        return self.root / self.edf_path

    @property
    def scoring_file(self) -> Path:
        assert self.scoring_path, f"{self.bad.name}: its template has no scoring export"
        return self.root / self.scoring_path


@dataclass
class Corpus:
    root: Path
    generation: GenerationReport
    cases: list[Case] = field(default_factory=list)


# ------------------------------------------------------------------------------ mutations


def _pb(case: Case, change: Callable) -> None:
    message = decode_message(case.recording_file.read_bytes())
    change(message)
    case.recording_file.write_bytes(message.SerializeToString())


def _samples(block, change: Callable[[np.ndarray], np.ndarray]) -> None:
    counts = np.frombuffer(block.samples, dtype="<i2").reshape(-1, 3).copy()
    block.samples = np.ascontiguousarray(change(counts), dtype="<i2").tobytes()


def _edf(case: Case, change: Callable[[edfio.Edf], None]) -> None:
    edf = edfio.read_edf(case.edf_file.read_bytes())
    change(edf)
    case.edf_file.write_bytes(edf.to_bytes())


def _annotations(case: Case, change: Callable[[list[edfio.EdfAnnotation]], list[edfio.EdfAnnotation]]) -> None:
    def apply(edf: edfio.Edf) -> None:
        edf.set_annotations(change(list(edf.annotations)))

    _edf(case, apply)


def _bytes(path: Path, change: Callable[[bytes], bytes]) -> None:
    path.write_bytes(change(path.read_bytes()))


def _sparse(path: Path, size: int) -> None:
    """Grow a file to ``size`` bytes without writing them (a sparse file: no disk used)."""
    with path.open("r+b") as fh:
        fh.truncate(size)


def _csv_text(case: Case) -> str:
    from sunrise_assets.domain.psg_readers.noxturnal_csv import decode_text

    return decode_text(case.scoring_file.read_bytes())


def _csv(case: Case, change: Callable[[str], str]) -> None:
    case.scoring_file.write_bytes(change(_csv_text(case)).encode("utf-16"))  # as Noxturnal writes it


def _duplicate_apnea_row(text: str) -> str:
    lines = text.splitlines()
    i = next(i for i, line in enumerate(lines) if "Apn" in line or "Hypop" in line or "A. " in line)
    return "\r\n".join([*lines[: i + 1], lines[i], *lines[i + 1 :]])


def _first_apnea(anns: list[edfio.EdfAnnotation]) -> edfio.EdfAnnotation:
    return next(a for a in anns if "Apnea" in a.text or "Hypopnea" in a.text)


def _set_rate(rate: float, *, blocks=("accelerometer", "gyroscope")):
    def change(m):
        for b in blocks:
            getattr(m, b).sample_rate_hz = rate

    return change


def _keep_seconds(start_s: float, seconds: float):
    def change(m):
        rate = m.accelerometer.sample_rate_hz
        lo, hi = int(start_s * rate), int((start_s + seconds) * rate)
        for block in (m.accelerometer, m.gyroscope):
            _samples(block, lambda c: c[lo:hi])
        m.start_time = (datetime.fromisoformat(m.start_time) + timedelta(seconds=start_s)).isoformat()

    return change


def _short_psg(edf: edfio.Edf) -> None:
    anns = list(edf.annotations)
    edf.slice_between_seconds(0, 2400)  # 40 min, a multiple of the generator's 32-s records
    edf.set_annotations([a for a in anns if a.onset + (a.duration or 0) <= 2400])


def _signals_cut_annotations_kept(edf: edfio.Edf) -> None:
    anns = list(edf.annotations)
    edf.slice_between_seconds(0, 32 * 337)  # 3 h of signal; the hypnogram still scores the whole night
    edf.set_annotations(anns)


def _stage_named_after_patient(case: Case) -> None:
    last = case.template_name.split()[-1]
    _annotations(
        case,
        lambda anns: [
            edfio.EdfAnnotation(a.onset, a.duration, f"Sleep stage {last}") if a.text == "Sleep stage R" else a
            for a in anns
        ],
    )


CORPUS: tuple[BadInput, ...] = (
    # --- the Sunrise recording ------------------------------------------------------------
    BadInput(
        "empty_recording",
        "empty .pb file",
        "problem",
        "recording",
        ("empty file",),
        mutate=lambda c: c.recording_file.write_bytes(b""),
    ),
    BadInput(
        "truncated_recording",
        "protobuf cut in the middle of the samples",
        "problem",
        "recording",
        ("truncated", "cut-off upload"),
        mutate=lambda c: _bytes(c.recording_file, lambda b: b[: len(b) // 2]),
    ),
    BadInput(
        "truncated_recording_tail",
        "protobuf missing its last 10 bytes",
        "problem",
        "recording",
        ("truncated",),
        mutate=lambda c: _bytes(c.recording_file, lambda b: b[:-10]),
    ),
    BadInput(
        "corrupt_recording",
        "first 16 bytes overwritten with 0xFF",
        "problem",
        "recording",
        ("corrupt data",),
        mutate=lambda c: _bytes(c.recording_file, lambda b: b"\xff" * 16 + b[16:]),
    ),
    BadInput(
        "non_utf8_recording",
        "Latin-1 byte in the patient note",
        "problem",
        "recording",
        ("patient.note", "not utf-8"),
        mutate=lambda c: _bytes(
            c.recording_file,
            lambda b: (
                b.replace(b"Sensor", b"S\xe9nsor", 1)
                .replace(b"found", b"f\xe9und", 1)
                .replace(b"Patient", b"P\xe9tient", 1)
            ),
        ),
    ),
    BadInput(
        "naive_start_time",
        "start time without UTC offset",
        "problem",
        "recording",
        ("no utc offset",),
        mutate=lambda c: _pb(c, lambda m: setattr(m, "start_time", m.start_time[:19])),
    ),
    BadInput(
        "garbage_start_time",
        "start time not ISO 8601",
        "problem",
        "recording",
        ("not iso 8601",),
        mutate=lambda c: _pb(c, lambda m: setattr(m, "start_time", "last tuesday evening")),
    ),
    BadInput(
        "no_gyroscope",
        "gyroscope block missing",
        "problem",
        "recording",
        ("lacks", "gyroscope"),
        mutate=lambda c: _pb(c, lambda m: m.ClearField("gyroscope")),
    ),
    BadInput(
        "rate_zero",
        "sample rate 0 Hz",
        "problem",
        "recording",
        ("sample rate",),
        mutate=lambda c: _pb(c, _set_rate(0.0)),
    ),
    BadInput(
        "rate_nan",
        "sample rate NaN",
        "problem",
        "recording",
        ("sample rate", "nan"),
        mutate=lambda c: _pb(c, _set_rate(float("nan"))),
    ),
    BadInput(
        "rate_inf",
        "sample rate infinite",
        "problem",
        "recording",
        ("sample rate", "inf"),
        mutate=lambda c: _pb(c, _set_rate(float("inf"))),
    ),
    BadInput(
        "rate_1hz",
        "10-Hz samples labelled 1 Hz (both sensors)",
        "night",
        "recording",
        ("sample rate 1.0 hz", "below"),
        BRONZE_RECORDING,
        mutate=lambda c: _pb(c, _set_rate(1.0)),
    ),
    BadInput(
        "rate_mismatch",
        "gyroscope labelled 1 Hz, accelerometer 10 Hz",
        "night",
        "recording",
        ("gyroscope", "wrong sample rate"),
        RECORDING,
        mutate=lambda c: _pb(c, _set_rate(1.0, blocks=("gyroscope",))),
    ),
    BadInput(
        "scale_nan",
        "accelerometer scale NaN",
        "night",
        "recording",
        ("scale", "nan"),
        RECORDING,
        mutate=lambda c: _pb(c, lambda m: setattr(m.accelerometer, "scale", float("nan"))),
    ),
    BadInput(
        "scale_inf",
        "gyroscope scale infinite",
        "night",
        "recording",
        ("scale", "inf"),
        RECORDING,
        mutate=lambda c: _pb(c, lambda m: setattr(m.gyroscope, "scale", float("inf"))),
    ),
    BadInput(
        "scale_x1000",
        "accelerometer scale 1000 times too large",
        "night",
        "recording",
        ("wrong scale",),
        BRONZE_RECORDING,
        mutate=lambda c: _pb(c, lambda m: setattr(m.accelerometer, "scale", m.accelerometer.scale * 1000)),
    ),
    BadInput(
        "odd_sample_bytes",
        "accelerometer samples one byte short",
        "night",
        "recording",
        ("whole number", "triplets"),
        RECORDING,
        mutate=lambda c: _pb(c, lambda m: setattr(m.accelerometer, "samples", m.accelerometer.samples[:-1])),
    ),
    BadInput(
        "gap_one_sensor",
        "10 min of gyroscope samples missing mid-night",
        "night",
        "recording",
        ("gyroscope", "lost samples"),
        RECORDING,
        mutate=lambda c: _pb(c, lambda m: _samples(m.gyroscope, lambda x: np.concatenate([x[:36000], x[42000:]]))),
    ),
    BadInput(
        "zero_dropout",
        "10 min of all-zero accelerometer samples mid-night",
        "night",
        "recording",
        ("exactly 0", "stopped recording"),
        BRONZE_RECORDING,
        mutate=lambda c: _pb(
            c,
            lambda m: _samples(
                m.accelerometer, lambda x: np.concatenate([x[:36000], np.zeros_like(x[36000:42000]), x[42000:]])
            ),
        ),
    ),
    BadInput(
        "recording_30s",
        "a valid recording of only 30 s (inside the PSG)",
        "night",
        "recording",
        ("too few samples",),
        BRONZE_RECORDING,
        mutate=lambda c: _pb(c, _keep_seconds(3600, 30)),
    ),
    BadInput(
        "clock_reset",
        "device clock reset to 2000-01-01",
        "unpaired",
        "recording",
        (),
        mutate=lambda c: _pb(c, lambda m: setattr(m, "start_time", "2000-01-01T00:00:00+00:00")),
    ),
    BadInput(
        "huge_recording",
        "a 300 MiB .pb (sparse)",
        "problem",
        "recording",
        ("bytes", "refused"),
        mutate=lambda c: _sparse(c.recording_file, 300 * 1024**2),
    ),
    # --- the PSG study ----------------------------------------------------------------------
    BadInput(
        "empty_edf",
        "empty .edf file",
        "problem",
        "psg",
        ("not an edf file",),
        mutate=lambda c: c.edf_file.write_bytes(b""),
    ),
    BadInput(
        "truncated_edf",
        "EDF cut at 60 % (still uploading)",
        "problem",
        "psg",
        ("incomplete",),
        mutate=lambda c: _bytes(c.edf_file, lambda b: b[: len(b) * 6 // 10]),
    ),
    BadInput(
        "corrupt_edf_header",
        "number of data records is garbage",
        "problem",
        "psg",
        ("header",),
        mutate=lambda c: _bytes(c.edf_file, lambda b: b[:236] + b"ab!?    " + b[244:]),
    ),
    BadInput(
        "huge_edf",
        "a 3 GiB .edf (sparse)",
        "problem",
        "psg",
        ("bytes", "refused"),
        mutate=lambda c: _sparse(c.edf_file, 3 * 1024**3),
    ),
    BadInput(
        "unknown_stage",
        "stage label 'Sleep stage Q'",
        "night",
        "psg",
        ("unknown sleep stage", "sleep stage q"),
        PSG,
        mutate=lambda c: _bytes(c.edf_file, lambda b: b.replace(b"Sleep stage R", b"Sleep stage Q")),
    ),
    BadInput(
        "unknown_stage_with_name",
        "stage label holding the patient's name",
        "night",
        "psg",
        ("unknown sleep stage", "[redacted]"),
        PSG,
        mutate=_stage_named_after_patient,
    ),
    BadInput(
        "no_scoring",
        "no stage and no event annotation (an EDF+ without its scoring)",
        "night",
        "psg",
        ("no sleep stage annotations and no scored events",),
        PSG,
        mutate=lambda c: _annotations(c, lambda anns: [a for a in anns if a.text in ("Lights off", "Lights on")]),
    ),
    BadInput(
        "all_unscored",
        "every epoch scored '?'",
        "night",
        "psg",
        ("none of the", "scored"),
        PSG,
        mutate=lambda c: _bytes(
            c.edf_file,
            lambda b: (
                b.replace(b"Sleep stage W", b"Sleep stage ?")
                .replace(b"Sleep stage N1", b"Sleep stage ? ")
                .replace(b"Sleep stage N2", b"Sleep stage ? ")
                .replace(b"Sleep stage N3", b"Sleep stage ? ")
                .replace(b"Sleep stage R", b"Sleep stage ?")
            ),
        ),
    ),
    BadInput(
        "duplicated_event",
        "one apnea scored twice",
        "night",
        "psg",
        ("duplicated event",),
        PSG,
        mutate=lambda c: _annotations(c, lambda anns: anns + [_first_apnea(anns)]),
    ),
    BadInput(
        "event_outside_study",
        "an apnea 1 h after the end of the study",
        "night",
        "psg",
        ("outside the study",),
        PSG,
        mutate=lambda c: _edf(
            c,
            lambda e: e.set_annotations(
                list(e.annotations) + [edfio.EdfAnnotation(e.duration + 3600, 20.0, "Obstructive Apnea")]
            ),
        ),
    ),
    BadInput(
        "event_without_duration",
        "an apnea without a duration",
        "night",
        "psg",
        ("without a positive duration",),
        PSG,
        mutate=lambda c: _annotations(
            c, lambda anns: anns + [edfio.EdfAnnotation(_first_apnea(anns).onset + 1, None, "Obstructive Apnea")]
        ),
    ),
    BadInput(
        "non_utf8_annotation",
        "Latin-1 byte in an annotation",
        "night",
        "psg",
        ("not utf-8",),
        PSG,
        mutate=lambda c: _bytes(c.edf_file, lambda b: b.replace(b"Lights off", b"Lumi\xe8re of", 1)),
    ),
    BadInput(
        "psg_40min",
        "a PSG of 40 min against an 8-h recording",
        "night",
        "psg",
        ("less than the 2 h",),
        PSG,
        mutate=lambda c: _edf(c, _short_psg),
    ),
    BadInput(
        "hypnogram_beyond_signals",
        "hypnogram of the whole night on 3 h of signals",
        "night",
        "psg",
        ("do not belong together",),
        PSG,
        mutate=lambda c: _edf(c, _signals_cut_annotations_kept),
    ),
    BadInput(
        "psg_not_overlapping",
        "PSG dated 3 days after the recording",
        "unpaired",
        "psg",
        (),
        mutate=lambda c: _edf(
            c, lambda e: setattr(e, "recording", edfio.Recording(startdate=e.startdate + timedelta(days=3)))
        ),
    ),
    # --- scoring exports beside a signals-only EDF ----------------------------------------------
    BadInput(
        "nsrr_unknown_stage",
        "NSRR XML with stage 'Stage 7 sleep|7'",
        "night",
        "scoring",
        ("unknown sleep stage", "stage 7 sleep"),
        EXPORT,
        template=NSRR,
        mutate=lambda c: _bytes(c.scoring_file, lambda b: b.replace(b"Stage 2 sleep|2", b"Stage 7 sleep|7")),
    ),
    BadInput(
        "nsrr_nan_start",
        "NSRR XML with an event starting at 'NaN'",
        "night",
        "scoring",
        ("not a finite number",),
        EXPORT,
        template=NSRR,
        mutate=lambda c: _bytes(
            c.scoring_file,
            lambda b: (
                b.replace(b"<Start>2237.3</Start>", b"<Start>NaN</Start>", 1)
                if b"<Start>2237.3</Start>" in b
                else b.replace(b"<Start>0</Start>", b"<Start>NaN</Start>", 1)
            ),
        ),
    ),
    BadInput(
        "nsrr_truncated",
        "NSRR XML cut in the middle",
        "night",
        "scoring",
        ("not well-formed",),
        EXPORT,
        template=NSRR,
        mutate=lambda c: _bytes(c.scoring_file, lambda b: b[: len(b) // 2]),
    ),
    BadInput(
        "huge_scoring_export",
        "a 100 MiB scoring XML (sparse)",
        "problem",
        "scoring",
        ("bytes", "refused"),
        template=NSRR,
        mutate=lambda c: _sparse(c.scoring_file, 100 * 1024**2),
    ),
    BadInput(
        "nsrr_note_with_name",
        "NSRR XML event whose text holds the patient's name",
        "handled",
        "scoring",
        (),
        template=NSRR,
        mutate=lambda c: _bytes(
            c.scoring_file,
            lambda b: b.replace(
                b"</ScoredEvents>",
                (
                    "<ScoredEvent><EventType/><EventConcept>Note: "
                    + c.template_name
                    + " asked for water</EventConcept>"
                    "<Start>600</Start><Duration>0</Duration></ScoredEvent></ScoredEvents>"
                ).encode("latin-1"),
            ),
        ),
    ),
    BadInput(
        "csv_duplicated_event",
        "Noxturnal CSV with one apnea row twice",
        "night",
        "scoring",
        ("duplicated event",),
        EXPORT,
        template=NOX,
        mutate=lambda c: _csv(c, _duplicate_apnea_row),
    ),
    BadInput(
        "csv_truncated",
        "Noxturnal CSV cut in the middle of a row, half way",
        "night",
        "scoring",
        ("truncated or partial scoring export",),
        EXPORT,
        template=NOX,
        mutate=lambda c: _csv(c, lambda text: text[: text.index(",", len(text) // 2) + 3]),
    ),
    BadInput(
        "csv_windows_1252",
        "Noxturnal CSV re-saved as Windows-1252 with accents",
        "handled",
        "scoring",
        (),
        template=NOX,
        mutate=lambda c: c.scoring_file.write_bytes(_csv_text(c).replace("Hypopnea", "Hypopnée").encode("cp1252")),
    ),
)


def build_corpus(root: Path, n_good: int, seed: int) -> Corpus:
    """Generate ``n_good`` good nights under ``root`` (scoring formats cycling through FORMATS), then one
    broken copy of its template night per bad input, each in its own patient folder."""
    generation = generate_bucket(root, n_good, seed, psg_formats=FORMATS)
    corpus = Corpus(root, generation)
    for i, bad in enumerate(CORPUS, start=1):
        tpl = generation.nights[bad.template]
        ref = f"BAD-{i:02d}"
        rec = f"raw/sunrise/{SITE}/{ref}/{ref}_{Path(tpl.recording_path).name.split('_', 1)[1]}"
        (root / rec).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / tpl.recording_path, root / rec)
        old_study = Path(tpl.study_dir).name
        study_name = f"{ref}_{old_study.split('_', 2)[2]}"
        study_dir = f"raw/psg/{SITE}/{ref}/{study_name}"
        (root / study_dir).mkdir(parents=True, exist_ok=True)
        scoring = None
        for src in sorted((root / tpl.study_dir).iterdir()):
            name = study_name + src.name[len(old_study) :] if src.name.startswith(old_study) else src.name
            shutil.copyfile(src, root / study_dir / name)
            if name.lower().endswith((".xml", ".csv", ".txt")) and name != "stage_coding.txt":
                scoring = f"{study_dir}/{name}"
        case = Case(bad, i, rec, study_dir, f"{study_dir}/{study_name}.edf", scoring, root, tpl.name)
        bad.mutate(case)
        corpus.cases.append(case)
    return corpus
