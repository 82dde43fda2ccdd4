"""Sunrise data platform: the Dagster code location."""
