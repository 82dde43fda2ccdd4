"""Sunrise data platform: the Dagster code location and the product around it.

Rooms (README: Layout and docs/ARCHITECTURE.md):

- ``defs/``              what Dagster loads: one module per layer, partitions, checks, automation,
                         sensors, jobs, the catalog; ``definitions`` is the code location's entry point
- ``domain/``            the platform's own logic, no Dagster: pairing, pseudonyms, manifests, layout,
                         PSG readers and writers, input validation, identifier scanning, the night picture
- ``lib/``               shared Dagster glue: the per-night batch loop, partition registration, runs
- ``dagster_internals/`` the only place that touches Dagster's private API
- ``synthetic/``         the synthetic night generator (simulator, bucket writer, bootstrap model fit)
- ``cli/``               the ``sunrise`` command line

Importing this package (or ``settings``) imports no Dagster.
"""
