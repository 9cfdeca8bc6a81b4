# syntax=docker/dockerfile:1
# The pipeline image: one `inter1-pipeline` entry point for every process (session-worker,
# sink, cues, simulate, produce, topics ensure, migrate, query ...). PyAV's wheels bring
# FFmpeg, so no system codecs are installed. Runs as UID/GID 10001 on a read-only root
# filesystem: the only writable paths a process needs are /tmp and $PIPELINE_STATE_DIR
# (/var/lib/inter1), which compose.yaml and the Kubernetes manifests mount as volumes.
#
#   docker build -t inter1-pipeline:0.1.0 .
#   docker run --rm --read-only --tmpfs /tmp inter1-pipeline:0.1.0 --help
#
# Health: the image defines none, because the endpoint depends on the subcommand:
#   session-worker  GET :9464/healthz (liveness), GET :9464/readyz (partitions assigned), /metrics
#   cues            GET :6066/ (faust's index, {"status": "OK"}), GET :6066/sessions?active=1
#   sink            GET 127.0.0.1:$PIPELINE_SINK_QUERY_PORT/ping (its local query endpoint)
#   simulate        GET :8765/healthz
# deploy/compose.yaml and deploy/k8s/ declare them per service.

# Python 3.11: the oldest version pyproject's requires-python (>=3.11) allows and the one
# the dependency ranges are resolved and tested on.
FROM python:3.11.14-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
COPY pyproject.toml README.md ./
COPY inter1_pipeline ./inter1_pipeline
COPY runtime ./runtime
COPY chunks ./chunks
COPY producers ./producers
COPY workers ./workers
COPY sinks ./sinks
COPY schemas ./schemas
COPY simulator ./simulator
COPY deploy ./deploy
# A regular (not editable) install: the packages and their data files land in the venv's
# site-packages, compiled to bytecode here so nothing is written at run time.
RUN pip install --no-cache-dir . \
    && pip check \
    && inter1-pipeline --version


FROM python:3.11.14-slim-bookworm AS runtime

LABEL org.opencontainers.image.title="inter1-pipeline" \
      org.opencontainers.image.description="Streaming pipeline for Interhuman AI's Inter-1: video chunks on Kafka, Inter-1 sessions, Avro events, ClickHouse" \
      org.opencontainers.image.licenses="Apache-2.0"

RUN groupadd --system --gid 10001 inter1 \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/inter1 \
       --no-create-home --shell /usr/sbin/nologin inter1 \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/inter1

COPY --from=build /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/var/lib/inter1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    PIPELINE_STATE_DIR=/var/lib/inter1 \
    LOG_FORMAT=json

USER 10001:10001
WORKDIR /var/lib/inter1
VOLUME ["/var/lib/inter1"]

# session-worker metrics/health, cues web server, simulator
EXPOSE 9464 6066 8765

HEALTHCHECK NONE
ENTRYPOINT ["inter1-pipeline"]
CMD ["--help"]
