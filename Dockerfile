# One image for the code location (gRPC server), the webserver and the daemon.
# Build: docker build -t fintrack-assets .   (docker-compose.yml builds it for you)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home

# One planned event per asset for a single-run range, not one per partition, in every process
# that creates runs (fintrack_assets/definitions.py, docs/decisions.md).
ENV DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS=true

WORKDIR /opt/dagster/app

# The project with the `deploy` extra (dagster-postgres, dagster-webserver).
COPY pyproject.toml README.md ./
COPY fintrack_assets ./fintrack_assets
RUN pip install ".[deploy]"

# Instance config (PostgreSQL storage, run queue, pools) and the gRPC workspace.
RUN useradd --create-home --uid 10001 dagster \
    && mkdir -p "$DAGSTER_HOME/storage" \
    && chown -R dagster:dagster "$DAGSTER_HOME"
COPY --chown=dagster:dagster deploy/dagster.yaml "$DAGSTER_HOME/dagster.yaml"
COPY --chown=dagster:dagster deploy/workspace.yaml "$DAGSTER_HOME/workspace.yaml"

USER dagster
WORKDIR /opt/dagster/dagster_home

# 4000: the code location's gRPC server; 3000: the webserver (same image, other command).
EXPOSE 4000 3000

CMD ["dagster", "api", "grpc", "-h", "0.0.0.0", "-p", "4000", "-m", "fintrack_assets"]
