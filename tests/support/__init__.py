"""Throwaway services the tests start and stop themselves: a PostgreSQL cluster, fake-gcs-server."""
