# syntax=docker/dockerfile:1
#
# The voice-agent server as a container: Python 3.13 slim, only the runtime dependencies,
# a non-root user, port 8080. Amazon Bedrock AgentCore Runtime runs arm64 images only:
#
#   docker buildx build --platform linux/arm64,linux/amd64 -t voice-agent:latest .
#
# Every runtime dependency ships binary wheels for both (manylinux, glibc 2.28 at most),
# so nothing is compiled: the build fails, rather than compiles, should one ever lack a wheel.
# Settings are environment variables (.env.example lists them all); docs/deploy.md says
# which to set on each platform. tests/unit/test_deploy.py checks this file against the
# settings and the app's routes.

ARG PYTHON_IMAGE=python:3.13-slim

# --- builder: a virtualenv with the project and its runtime dependencies --------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
WORKDIR /src
# The dependencies first, from pyproject.toml alone, so a code change reuses this layer
# (under emulation, for the other architecture, installing them is the slow part).
# project.dependencies only: the dev extra (test and lint tools) stays out of the image.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; open('requirements.txt', 'w').write('\n'.join(deps))" \
 && /opt/venv/bin/pip install --only-binary=:all: -r requirements.txt
COPY app ./app
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/venv/bin/pip install --no-deps /wheels/*.whl \
 && /opt/venv/bin/pip check

# --- runtime --------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
# A fixed numeric uid, so Kubernetes' runAsNonRoot can verify it and runAsUser match it.
RUN groupadd --system --gid 10001 voice \
 && useradd --system --uid 10001 --gid voice --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin voice
COPY --from=builder /opt/venv /opt/venv
WORKDIR /srv
# The plugin folder (TOOLS_DIR, relative to the working directory). The app itself is in
# the virtualenv, static page included.
COPY tools ./tools
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOST=0.0.0.0 \
    PORT=8080 \
    MODEL_PROVIDER=nova_sonic
# Compile the plugins now (the root filesystem may be read-only at run time), and fail the
# build, on each architecture, if the app cannot be built or a native library cannot load:
# libstdc++ for espeak-ng and soxr comes with the slim image, CA certificates for Bedrock's
# TLS too. Building the app makes no network call and needs no AWS credentials.
RUN python -m compileall -q tools \
 && python -c "import ctypes, espeakng_loader; ctypes.CDLL(espeakng_loader.get_library_path()); from app.config import load_settings; from app.main import create_app; create_app(load_settings(env_file=None))"
USER 10001:10001
EXPOSE 8080
# /ping is the AgentCore health contract (200 while the process serves, busy or not). No
# curl in slim images: Python's own urllib; any error or non-2xx status exits non-zero.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/ping' % os.environ.get('PORT', '8080'), timeout=4)"]
# On SIGTERM the server stops admitting (/ready 503), lets open sessions finish the response
# in progress for up to DRAIN_TIMEOUT seconds (default 30), closes them (1012) and exits 0.
# Give the platform's stop grace period DRAIN_TIMEOUT + 10 s: `docker stop -t 40`, ECS
# `stopTimeout: 40`, Kubernetes `terminationGracePeriodSeconds` (plus its preStop sleep: 45
# in deploy/k8s). The platform's default (10 s for docker stop, 30 s for ECS and Kubernetes)
# cuts the drain short.
STOPSIGNAL SIGTERM
# Exec form: the server is PID 1 and receives the signal itself (uvicorn installs handlers
# for SIGTERM and SIGINT; a shell in between would swallow it).
CMD ["python", "-m", "app"]
