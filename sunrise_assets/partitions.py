"""One night = one partition. Keys are pseudonyms (sub-xxxxxxxx_ses-YYYYMMDD), never PHI."""

from dagster import BackfillPolicy, DynamicPartitionsDefinition

nights_partitions = DynamicPartitionsDefinition(name="nights")

# A backfill of thousands of nights runs as a few runs of many nights each, never one per night.
# A run costs ~5 s to start (a process importing the code location) and one bad night fails alone,
# so runs are large: 100 nights is ~35 s of work per core; memory does not grow with it (streamed).
NIGHTS_PER_RUN = 100
nights_backfill_policy = BackfillPolicy.multi_run(max_partitions_per_run=NIGHTS_PER_RUN)
