"""Google Cloud Run jobs: the one place that knows the Cloud Run Admin API v2.

- ``client``: clients (the real API, or an endpoint override for tests), backoff on quota errors,
  what an execution's state means.
- ``jobs``: the job spec the platform deploys, created or updated idempotently.
- ``run_launcher``: each Dagster run as a Cloud Run job execution (extends dagster-contrib-gcp's).
- ``executor``: each step of a run as a Cloud Run job execution, concurrency capped.
"""
