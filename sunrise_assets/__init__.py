"""Sunrise data platform: the Dagster code location."""

import warnings

from dagster import BetaWarning

# BackfillPolicy on assets is marked beta; batching nights per run is a requirement, so we use it
# knowingly and keep the logs free of one warning per asset.
warnings.filterwarnings("ignore", category=BetaWarning, message=".*backfill_policy.*")
