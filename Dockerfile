# fastchat container image: build the wheel in one stage, install only the wheel in the next.
# tests/integration/test_wheel.py reads this file, builds the same wheel from the same build
# context (.dockerignore applied), installs it into a fresh virtual environment and runs this
# CMD with these ENV names, so the image's recipe cannot drift from what the tests exercise.
#
#   docker build -t fastchat .
#   docker run -p 8080:8080 -p 8081:8081 -v fastchat-data:/data fastchat
#
# Ports: 8080 (PORT: pages, REST, ws://HOST:8080/ws), 8081 (WS_PORT: the fast WebSocket port).
# Volume: /data holds the database (DB_PATH=/data/chat.db and its -wal/-shm files).
# Env: every setting of `fastchat serve --help` (README, Configuration); the image sets HOST,
# PORT, WS_PORT, DB_PATH, and SEED_POSTS=false (no sample posts: -e SEED_POSTS=true for a demo).
#
# The base image is pinned to an exact release (Python and Debian): a rebuild gets the same
# interpreter. Pin the digest too where the registry is reachable:
#   docker buildx imagetools inspect python:3.11.13-slim-bookworm

# ---- stage 1: compile the Cython hub and build the platform wheel ----
FROM python:3.11.13-slim-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY . .
# Build isolation installs the pinned build requirements (setuptools, Cython, picows==2.3.1).
RUN pip wheel --no-deps -w /dist .

# ---- stage 2: runtime, no compiler and no source tree ----
FROM python:3.11.13-slim-bookworm AS runtime
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
COPY --from=build /dist /tmp/dist
# No extras by default: SQLite, one node. --build-arg EXTRAS=redis (or postgres, or all) adds
# the drivers BROKER_URL and DATABASE_URL need.
ARG EXTRAS=""
RUN pip install "$(ls /tmp/dist/*.whl)${EXTRAS:+[$EXTRAS]}" \
 && rm -rf /tmp/dist
RUN useradd --system --uid 10001 --user-group --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin fastchat \
 && mkdir -p /data \
 && chown fastchat:fastchat /data
ENV DB_PATH=/data/chat.db HOST=0.0.0.0 PORT=8080 WS_PORT=8081 SEED_POSTS=false
# Declared after the chown so a new named volume starts out owned by the fastchat user.
VOLUME /data
WORKDIR /data
USER fastchat
EXPOSE 8080 8081
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/api/v1/health' % os.environ.get('PORT', '8080'), timeout=4)"]
# fastchat handles SIGTERM (docker stop) itself: it drains and exits 0.
STOPSIGNAL SIGTERM
CMD ["fastchat", "serve"]
