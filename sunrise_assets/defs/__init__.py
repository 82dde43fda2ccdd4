"""What Dagster loads: the assets of each layer, partitions, checks, automation, sensors, jobs.

``code_location.build_defs`` assembles them; ``sunrise_assets.definitions`` is the module Dagster
loads (workspace.yaml, the Dockerfile and existing instances name it).
"""

import warnings

from dagster import BetaWarning

# BackfillPolicy on assets is marked beta; batching nights per run is a requirement, so we use it
# knowingly and keep the logs free of one warning per asset.
warnings.filterwarnings("ignore", category=BetaWarning, message=".*backfill_policy.*")
