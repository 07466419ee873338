# syntax=docker/dockerfile:1
#
# northflank-llm-operator container image.
#
#   docker build -t northflank-llm-operator:dev .
#   docker run --rm northflank-llm-operator:dev --version
#
# Two stages: `build` turns the project into a wheel and installs it, with the dependency versions
# and hashes pinned in uv.lock, into a virtual environment; the final stage copies only that
# environment onto a clean Python image and runs it as an unprivileged user.

ARG PYTHON_IMAGE=python:3.11.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS build

# uv builds the wheel and installs exactly what uv.lock pins. It never leaves this stage.
ARG UV_VERSION=0.13.8
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_NO_CACHE=1 \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy
# Builds behind a TLS-intercepting proxy pass its CA bundle as an optional build secret
#   docker build --secret id=ca-bundle,src=/etc/ssl/certs/ca-certificates.crt .
# pip and uv trust it for the downloads of that step only; a secret is never stored in a layer.
RUN --mount=type=secret,id=ca-bundle \
    if [ -s /run/secrets/ca-bundle ]; then export SSL_CERT_FILE=/run/secrets/ca-bundle PIP_CERT=/run/secrets/ca-bundle; fi \
    && pip install "uv==${UV_VERSION}"

WORKDIR /src
# Dependencies first, so code changes do not invalidate the dependency layer.
COPY pyproject.toml uv.lock README.md ./
RUN --mount=type=secret,id=ca-bundle \
    if [ -s /run/secrets/ca-bundle ]; then export SSL_CERT_FILE=/run/secrets/ca-bundle; fi \
    && uv export --frozen --no-default-groups --no-emit-project --format requirements-txt \
        --output-file /tmp/requirements.txt \
    && uv venv /opt/venv --python /usr/local/bin/python3 \
    && VIRTUAL_ENV=/opt/venv uv pip install --require-hashes --no-deps -r /tmp/requirements.txt

COPY operator/ operator/
RUN --mount=type=secret,id=ca-bundle \
    if [ -s /run/secrets/ca-bundle ]; then export SSL_CERT_FILE=/run/secrets/ca-bundle; fi \
    && uv build --wheel --out-dir /tmp/dist \
    && VIRTUAL_ENV=/opt/venv uv pip install --no-deps /tmp/dist/*.whl


FROM ${PYTHON_IMAGE}

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="northflank-llm-operator" \
      org.opencontainers.image.description="Kubernetes operator that mirrors Northflank LLM model deployments into LLMModelDeployment custom resources" \
      org.opencontainers.image.source="https://github.com/northflank-llm-operator/northflank-llm-operator" \
      org.opencontainers.image.url="https://github.com/northflank-llm-operator/northflank-llm-operator" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"

# The runtime needs no installer: drop pip (and setuptools/wheel where the base has them), then add the
# unprivileged user the chart runs as (65532, like distroless' "nonroot").
RUN python -m pip uninstall --yes pip setuptools wheel \
    && groupadd --system --gid 65532 nonroot \
    && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin nonroot

COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

USER 65532:65532
# kopf's liveness endpoint (--liveness=http://0.0.0.0:8080/healthz), and Prometheus metrics with
# readiness (--metrics-bind-address=:8081, as the chart sets it).
EXPOSE 8080 8081
ENTRYPOINT ["northflank-llm-operator"]
# The chart passes its own arguments; this default watches every namespace.
CMD ["run", "--standalone", "--all-namespaces"]
