"""The raw side as Dagster sees it: one external asset, observed per night with a data version.

Dagster does not materialize raw files; the bucket sensor (and `sunrise ingest`) observe them.
The observation's data version is a hash of the night's file contents, so bronze turns stale
exactly when a night's raw content changes, and an identical re-upload changes nothing.
"""

from dagster import AssetSpec

from sunrise_assets.defs.partitions import nights_partitions
from sunrise_assets.lib.night_registry import RAW_NIGHT

raw_night = AssetSpec(
    RAW_NIGHT,
    group_name="raw",
    partitions_def=nights_partitions,
    kinds={"bucket"},
    description=(
        "A night's delivered files in the training bucket: the Sunrise recording and the PSG study "
        "of one patient that overlap in time. Identifiable (PHI); observed by the raw_bucket_sensor, "
        "never copied past bronze. Data version = hash of the files' contents."
    ),
)
