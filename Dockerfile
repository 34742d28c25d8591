# syntax=docker/dockerfile:1
# The injector image: one venv at /opt/injector, run as a numeric non-root user, fit for a read-only
# root filesystem. Build (docker or podman; README step 2, and tests/test_image.py runs it):
#   VERSION=$(python3 -c 'import injector; print(injector.__version__)')
#   podman build -t injector:$VERSION --build-arg VERSION=$VERSION --build-arg REVISION=$(git rev-parse HEAD) .
#
# Both stages use the same Python image ON PURPOSE: a venv is tied to the interpreter it was made
# with (bin/python links to /usr/local/bin/python3 here, /usr/bin/python3 in a Debian-packaged
# Python), so it moves between stages unchanged only if that interpreter is at the same path in
# both. (A distroless Python image puts Debian's python3.11 at /usr/bin and would need a Debian
# builder to match; exec-form ENTRYPOINT already means no shell is needed at run time, and the slim
# image keeps /bin/sh for `command` notifiers that want one.) Any image with python3 and its venv
# module works: the build uses only the venv's own pip, never a system pip.
#
# For a real registry, pin the base by digest so that rebuilding one commit gives one image:
#   --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:<digest>
# with the digest of the day you pin, from `skopeo inspect --format '{{.Digest}}'
# docker://docker.io/library/python:3.11-slim-bookworm` (or `docker buildx imagetools inspect`).
# The default below stays a tag, overridable like any ARG (the tests pass a local Debian image).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
# The API models botocore keeps (see step 3); "all" keeps every one (bench/image.py measures both).
ARG BOTOCORE_SERVICES="secretsmanager ssm sts"
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Only what the wheel is built from (.dockerignore keeps everything else out of the context).
COPY pyproject.toml README.md ./
COPY injector ./injector
# 1. A fresh venv; its pip builds the project's wheel (build isolation fetches the setuptools
#    pyproject.toml asks for) and installs it with its dependencies. pip byte-compiles everything
#    it installs (step 4 compiles it again), so nothing needs to write .pyc files at run time.
#    The webhook extra (jsonpatch, ~0.1 MB) is in: deploy/webhook runs `injector webhook` from this image.
# 2. pip and setuptools leave the venv: nothing is installed at run time. So does charset-normalizer
#    (0.9 MB), which requests would use to guess the encoding of a body that names none: the
#    injector makes it unimportable before it imports requests (Vault answers UTF-8 JSON), so it is
#    never loaded, and requests falls back to UTF-8 without it.
# 3. botocore ships the API model of every AWS service (~28 MB, the largest part of the venv); the
#    injector calls Secrets Manager and SSM, and STS for IRSA (AssumeRoleWithWebIdentity). The
#    top-level files (endpoints, partitions, retry rules) stay. A credential source needing another
#    service (an SSO profile: sso, sso-oidc) needs it added to BOTOCORE_SERVICES.
#    Then endpoints.json (1.2 MB, every service of every partition) and the Secrets Manager and SSM
#    models are cut down to what the sources call (`python -m injector.sources.aws_data`: exactly
#    what the injector keeps of them at run time, ~16 KB each), so no pod walks the whole files
#    again at every start: about 20 ms less CPU per `init` and sidecar start.
# 4. The venv's bytecode (the injector's and its libraries') is compiled again at optimization
#    level 2 and without column positions, in place of pip's (`python -m injector.process.bytecode`):
#    without docstrings, asserts and the tables that put `^^^` under an expression in a traceback
#    (file and line stay). Every imported module's code stays in memory for the process's life, so
#    this is memory saved in every pod (bench/README.md). Python reads a module's .pyc without
#    asking how it was compiled, so no PYTHONOPTIMIZE is needed (which would want a second copy of
#    the standard library's, ~10 MB). `injector --help` does not come from docstrings. The same
#    is done to the standard library's modules the injector imports (about 150 files, 3 MB),
#    written aside for the last stage to copy over the base's: both stages have the same base,
#    so these files match its sources (the base's other modules keep the bytecode they ship with).
# 5. The compiled extensions lose their debugging symbols (binutils' strip, in this stage only):
#    libyaml's binding ships 2.7 MB of them, watchfiles' 0.3 MB. They are never loaded; the
#    standard library's bytecode of the last stage takes about the room they leave.
RUN python3 -m venv /opt/injector \
 && /opt/injector/bin/pip install '.[webhook]' \
 && /opt/injector/bin/pip uninstall --yes charset-normalizer pip setuptools \
 && if [ "${BOTOCORE_SERVICES}" != all ]; then \
      for model in /opt/injector/lib/python3*/site-packages/botocore/data/*/; do \
        case " ${BOTOCORE_SERVICES} " in *" $(basename "$model") "*) ;; *) rm -r "$model" ;; esac; \
      done; \
    fi \
 && /opt/injector/bin/python -m injector.sources.aws_data /opt/injector/lib/python3*/site-packages/botocore/data \
 && /opt/injector/bin/python -m injector.process.bytecode /opt/injector/lib \
 && /opt/injector/bin/python -m injector.process.bytecode --standard-library --into /opt/stdlib-bytecode \
 && apt-get update && apt-get install --yes --no-install-recommends binutils \
 && find /opt/injector -name '*.so' -exec strip --strip-unneeded {} +

FROM ${PYTHON_IMAGE}
# No defaults that could lie: the build command passes both (`injector --version`, the git commit).
ARG VERSION=unknown
ARG REVISION=unknown
# No org.opencontainers.image.source: the project has no public repository address yet.
LABEL org.opencontainers.image.title="injector" \
      org.opencontainers.image.description="Init container and sidecar that render Vault and AWS secrets into a pod's in-memory volume, keep them fresh and tell the app to reload." \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=builder /opt/injector /opt/injector
# Step 4's bytecode of the standard library's modules the injector imports, over the base's own.
COPY --from=builder /opt/stdlib-bytecode/ /
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
# No HEALTHCHECK: Kubernetes ignores it and probes /healthz and /readyz itself (deploy/ sets the
# probes); the OCI image format podman builds has no field for it either.
ENTRYPOINT ["injector"]
CMD ["--help"]
