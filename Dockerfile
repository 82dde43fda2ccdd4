# The image Cloud Run runs: the code location with its locked dependencies (no dev group), as a
# non-root user. Two stages: uv and the build stay in the first; the second gets /app only.
# Build: `gcloud builds submit --tag IMAGE` or `docker build -t IMAGE .` (README: Deploying to Cloud Run).
FROM python:3.11-slim AS build
RUN python -m pip install --no-cache-dir uv==0.13.8
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never UV_NO_CACHE=1
WORKDIR /app
# Dependencies first (a layer that changes only with uv.lock), then the project itself.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY sunalgo sunalgo
COPY sunrise_assets sunrise_assets
COPY resources resources
COPY sql sql
COPY deploy deploy
COPY workspace.yaml dagster.yaml ./
RUN uv sync --frozen --no-dev

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 --user-group sunrise
WORKDIR /app
# Code and venv stay root-owned (read-only for the app); only DAGSTER_HOME is the app's.
COPY --from=build /app /app
# DAGSTER_EVENT_BATCH_SIZE: Dagster hands a step's per-night asset events to the event log as one
# batch (dagster-postgres writes a batch of materializations in one statement).
ENV PATH="/app/.venv/bin:$PATH" PYTHONUNBUFFERED=1 DAGSTER_HOME=/app/dagster_home DAGSTER_EVENT_BATCH_SIZE=200
RUN mkdir -p /app/dagster_home \
 && cp /app/deploy/dagster.cloudrun.yaml /app/dagster_home/dagster.yaml \
 && chown -R sunrise:sunrise /app/dagster_home
USER sunrise
EXPOSE 4000
# No ENTRYPOINT: Cloud Run's container args are the whole command — the run launcher sends
# `dagster api execute_run ...`, the Cloud Run executor `dagster api execute_step`. By default the
# image serves the code location over gRPC.
CMD ["dagster", "api", "grpc", "-m", "sunrise_assets.definitions", "-h", "0.0.0.0", "-p", "4000"]
