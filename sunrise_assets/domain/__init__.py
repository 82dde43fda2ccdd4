"""The platform's domain code: plain Python, numpy and pydantic, no Dagster.

Pairing raw files into nights, pseudonyms and night keys, manifests, the bucket layout, reading and
writing PSG label exports, validating raw input, scanning for identifiers, the night picture.
A test (tests/test_architecture.py) fails if any module here imports Dagster, even indirectly.
"""
