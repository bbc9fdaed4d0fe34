# fastchat container image: build the wheel in one stage, install only the wheel in the next.
# tests/integration/test_wheel.py reads this file, builds the same wheel from the same build
# context (.dockerignore applied), installs it into a fresh virtual environment and runs this
# CMD with these ENV names, so the image's recipe cannot drift from what the tests exercise.
#
#   docker build -t fastchat .
#   docker run -p 8080:8080 -p 8081:8081 -v fastchat-data:/data fastchat

# ---- stage 1: compile the Cython hub and build the platform wheel ----
FROM python:3.11-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY . .
# Build isolation installs the pinned build requirements (setuptools, Cython, picows==2.3.1).
RUN pip wheel --no-deps -w /dist .

# ---- stage 2: runtime, no compiler and no source tree ----
FROM python:3.11-slim AS runtime
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
COPY --from=build /dist /tmp/dist
RUN pip install /tmp/dist/*.whl \
 && rm -rf /tmp/dist
RUN useradd --system --uid 10001 --user-group --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin fastchat \
 && mkdir -p /data \
 && chown fastchat:fastchat /data
ENV DB_PATH=/data/chat.db HOST=0.0.0.0 PORT=8080 WS_PORT=8081
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
