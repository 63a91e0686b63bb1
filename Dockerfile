# asyncjob-exporter container image.
# BASE_IMAGE is an argument so offline builders can pass a local stand-in for python:3.12-slim;
# both stages must use the same base because the venv's python3 symlink points into it.
ARG BASE_IMAGE=python:3.12-slim

FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python3 -m venv /opt/asyncjob-exporter
COPY pyproject.toml README.md ./
COPY exporter ./exporter
RUN /opt/asyncjob-exporter/bin/python3 -m pip install --no-cache-dir .

FROM ${BASE_IMAGE}
# Provenance labels; a release build passes the real values:
#   --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" --build-arg SOURCE=<repo URL>
# VERSION's default follows exporter.__version__ (tests/test_deploy.py checks it).
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=unknown
LABEL org.opencontainers.image.title="asyncjob-exporter" \
      org.opencontainers.image.description="Prometheus exporter for asynchronous job APIs (Vocdoni SaaS, Ordo)" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}"
ENV PATH=/opt/asyncjob-exporter/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
COPY --from=build /opt/asyncjob-exporter /opt/asyncjob-exporter
COPY deploy/docker/config.yaml /etc/asyncjob-exporter/config.yaml
# 65532 is the conventional "nonroot" uid; numeric so Kubernetes runAsNonRoot can verify it.
RUN mkdir -p /data && chown 65532:65532 /data && chmod 0750 /data
VOLUME ["/data"]
USER 65532:65532
WORKDIR /data
EXPOSE 9877
# Slim images have no curl; python3 is always there. Assumes the default listen port 9877.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python3", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9877/healthz', timeout=4).status == 200 else 1)"]
ENTRYPOINT ["asyncjob-exporter"]
CMD ["--config.file", "/etc/asyncjob-exporter/config.yaml"]
