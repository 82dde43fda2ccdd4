"""The one place allowed to import Dagster's private API (``dagster._...``).

Every private name the platform relies on is imported here or in a module of this package, and
tests/test_dagster_internals.py checks each one against the installed Dagster, so an upgrade that
changes one fails there with a message naming it, not somewhere deep in a run.
"""
