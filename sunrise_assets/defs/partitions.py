"""One night = one partition. Keys are pseudonyms (sub-<16 hex>_ses-YYYYMMDD), never PHI."""

from dagster import BackfillPolicy, DynamicPartitionsDefinition

from sunrise_assets.settings import NIGHTS_PER_RUN  # nights per run of a backfill (why: settings.py)

nights_partitions = DynamicPartitionsDefinition(name="nights")
nights_backfill_policy = BackfillPolicy.multi_run(max_partitions_per_run=NIGHTS_PER_RUN)
