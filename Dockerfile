# The image Cloud Run runs: the code location with its locked dependencies, as a non-root user.
FROM python:3.11-slim AS build
COPY --from=ghcr.io/astral-sh/uv:0.13.8 /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY sunalgo sunalgo
COPY sunrise_assets sunrise_assets
COPY resources resources
COPY sql sql
COPY workspace.yaml dagster.yaml ./
RUN uv sync --frozen --no-dev

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 sunrise
WORKDIR /app
COPY --from=build --chown=sunrise:sunrise /app /app
ENV PATH="/app/.venv/bin:$PATH" PYTHONUNBUFFERED=1 DAGSTER_HOME=/app/dagster_home
RUN mkdir -p /app/dagster_home && cp /app/dagster.yaml /app/dagster_home/ && chown -R sunrise:sunrise /app/dagster_home
USER sunrise
# Cloud Run overrides the arguments per execution (`dagster api execute_run ...`).
ENTRYPOINT ["dagster"]
CMD ["api", "grpc", "-m", "sunrise_assets.definitions", "-h", "0.0.0.0", "-p", "4000"]
