"""Data contracts between layers, as pydantic models (validated on read and on write)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_json_bytes(self) -> bytes:
        # Sorted, fixed layout: the same night always gives the same bytes.
        return (self.model_dump_json(indent=2) + "\n").encode()


class NightSource(_Model):
    """Raw layer, PHI: which delivered files make a night. Never copied past raw."""

    night: str
    subject: str
    date_shift_days: int
    recording_path: str
    recording_generation: str
    study_edf_path: str
    study_labels_path: str = Field(default="", description="the scoring export, or the EDF+ itself")
    study_coding_path: str | None = Field(default=None, description="stage coding sidecar of an integer hypnogram")
    study_generation: str
    grid_start_offset_s: float = Field(description="PSG epoch 0 on the recording's clock, seconds")
    overlap_s: float
    content_version: str = Field(description="hash of the night's raw file contents: the raw data version")


class RecordingSummary(_Model):
    sha256: str
    sample_rate_hz: float
    n_samples: int
    duration_s: float
    firmware: str


class PsgSummary(_Model):
    sha256: str
    n_epochs: int
    n_respiratory_events: int
    dropped_annotations: int = Field(description="free-text annotations and untyped events removed by anonymisation")
    scoring_format: str = Field(default="edf+", description="format the lab delivered the scoring in")
    has_staging: bool = Field(default=True, description="False for a home sleep test (events, no stages)")
    labels_sha256: str = ""


class NightManifest(_Model):
    """Bronze: what one anonymised night holds. No identifier, no real date."""

    schema_version: int = 1
    night: str
    subject: str
    session_date: str = Field(description="shifted date of the night, YYYY-MM-DD")
    psg_start_time: str = Field(description="shifted local start of the PSG, ISO 8601")
    grid_start_offset_s: float
    overlap_s: float
    recording: RecordingSummary
    psg: PsgSummary
    source_generations: dict[str, str] = Field(
        description=(
            'raw data version: {"raw_content": hash of the raw files\' contents}; never object generations, which '
            "are upload times"
        )
    )
