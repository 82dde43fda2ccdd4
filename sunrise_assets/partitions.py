"""One night = one partition. Keys are pseudonyms (sub-xxxxxxxx_ses-YYYYMMDD), never PHI."""

from dagster import BackfillPolicy, DynamicPartitionsDefinition

nights_partitions = DynamicPartitionsDefinition(name="nights")

# A backfill of thousands of nights runs as a few runs of many nights each, never one per night.
NIGHTS_PER_RUN = 50
nights_backfill_policy = BackfillPolicy.multi_run(max_partitions_per_run=NIGHTS_PER_RUN)
