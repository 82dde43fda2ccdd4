"""Shared Dagster glue (public Dagster API only): the per-night batch loop of every asset step,
registering nights as partitions, and the runs behind `sunrise ingest`, `refresh` and `forget`."""
