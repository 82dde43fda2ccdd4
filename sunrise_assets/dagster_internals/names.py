"""Private names of Dagster that have no public export in Dagster 1.13: run tags and the data
version tag (their string values are stable and documented, the constants are not exported)."""

from dagster._core.definitions.data_version import CODE_VERSION_TAG, DATA_VERSION_TAG, INPUT_DATA_VERSION_TAG_PREFIX
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    BACKFILL_ID_TAG,
    PARTITION_NAME_TAG,
    RETRY_ON_ASSET_OR_OP_FAILURE_TAG,
)

__all__ = [
    "ASSET_PARTITION_RANGE_END_TAG",
    "ASSET_PARTITION_RANGE_START_TAG",
    "BACKFILL_ID_TAG",
    "CODE_VERSION_TAG",
    "DATA_VERSION_TAG",
    "INPUT_DATA_VERSION_TAG_PREFIX",
    "PARTITION_NAME_TAG",
    "RETRY_ON_ASSET_OR_OP_FAILURE_TAG",
]
