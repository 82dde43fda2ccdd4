"""Dagster resources: one per outside system."""
