"""Shared Dagster glue: the per-night batch loop of every asset step, registering nights as
partitions, the queued work behind `sunrise ingest`, `refresh` and `forget` (backfills, the daemon
child), fitting and promoting the model, the scale benchmark's synthetic history. Dagster's public
API, and its private one only through ``sunrise_assets.dagster_internals``."""
