# syntax=docker/dockerfile:1
# The injector image: one venv at /opt/injector, run as a numeric non-root user, fit for a read-only
# root filesystem. Build:  docker build -t injector:0.1.0 .
#
# Both stages use the same Python image ON PURPOSE: a venv is tied to the interpreter it was made
# with (bin/python links to /usr/local/bin/python3.11), so it moves between stages unchanged only if
# that interpreter is at the same path in both. (A distroless Python image puts Debian's python3.11
# at /usr/bin and would need a Debian builder to match; exec-form ENTRYPOINT already means no shell
# is needed at run time, and the slim image keeps /bin/sh for `command` notifiers that want one.)
# Pin the digest in CI: python:3.11-slim-bookworm@sha256:...
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Only what the wheel is built from (.dockerignore keeps everything else out of the context).
COPY pyproject.toml README.md ./
COPY injector ./injector
# 1. Build the project's wheel (build isolation fetches the setuptools pyproject.toml asks for).
# 2. Install it with its dependencies into a fresh venv; pip byte-compiles everything, so nothing
#    needs to write .pyc files at run time.
RUN python -m pip wheel --no-deps --wheel-dir /tmp/wheels . \
 && python -m venv /opt/injector \
 && /opt/injector/bin/pip install /tmp/wheels/*.whl \
 && /opt/injector/bin/pip uninstall --yes pip setuptools

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="injector" \
      org.opencontainers.image.description="Init container and sidecar that render Vault and AWS secrets into a pod's in-memory volume, keep them fresh and tell the app to reload." \
      org.opencontainers.image.source="https://example.invalid/tmpfs-injector" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=builder /opt/injector /opt/injector
# PYTHONDONTWRITEBYTECODE: the root filesystem is read-only in the pod; the .pyc files are built.
# PYTHONUNBUFFERED: log lines reach `kubectl logs` as they are written.
# No HOME or TMPDIR is needed: injector writes only to output_dir and state_dir, both mounted
# volumes (the manifests in deploy/ also point TMPDIR at state_dir, in case a library asks).
ENV PATH=/opt/injector/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Numeric, so that kubelet can verify runAsNonRoot; 65532 is the "nonroot" user of distroless.
USER 65532:65532
EXPOSE 8099
ENTRYPOINT ["injector"]
CMD ["--help"]
