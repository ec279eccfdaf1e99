# syntax=docker/dockerfile:1
# Multi-stage build: compile in the Rust image, ship a slim Debian image with
# only the `scribe` binary. Build with: docker build -t scribe .
# (pass --build-arg SCRIBE_GIT_HASH=$(git rev-parse HEAD) to record the commit)
# The runner image (scribe-runner in whisper mode, with faster-whisper and the tiny.en
# model): docker build --target runner -t scribe-runner .

FROM rust:1-bookworm AS build
ARG SCRIBE_GIT_HASH=unknown
ENV SCRIBE_GIT_HASH=${SCRIBE_GIT_HASH}
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p scribe-server -p scribe-runner \
    && cp target/release/scribe target/release/scribe-runner /usr/local/bin/

# scribe-runner with its Python environment (scripts/runner-env). Point it at the backend
# with SCRIBE_RUNNER_BACKEND_URL and SCRIBE_RUNNER_TOKEN_FILE (or a config file); add larger
# CTranslate2 models by mounting them and listing them in SCRIBE_RUNNER_WHISPER_MODELS
# (NAME=DIR,NAME=DIR).
FROM debian:bookworm-slim AS runner
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /work --uid 10002 scribe-runner
COPY scripts/runner-env /opt/scribe-runner/scripts/runner-env
COPY crates/runner/whisper/requirements.txt /opt/scribe-runner/crates/runner/whisper/
RUN /opt/scribe-runner/scripts/runner-env /opt/scribe-runner/venv \
    && rm -rf /root/.cache/pip
COPY --from=build /usr/local/bin/scribe-runner /usr/local/bin/scribe-runner
ENV SCRIBE_RUNNER_MODE=whisper \
    SCRIBE_RUNNER_WHISPER_PYTHON=/opt/scribe-runner/venv/bin/python \
    SCRIBE_RUNNER_WHISPER_MODELS=tiny.en=/opt/scribe-runner/venv/models/tiny.en
# Fails the build if the environment or the model doesn't work.
RUN scribe-runner check --skip-backend
USER scribe-runner
WORKDIR /work
ENTRYPOINT ["scribe-runner"]
CMD ["run"]

# The server (the default target).
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /data --uid 10001 scribe \
    && mkdir -p /data && chown scribe /data
COPY --from=build /usr/local/bin/scribe /usr/local/bin/scribe
USER scribe
WORKDIR /data
# The embedded default listens on 127.0.0.1; in a container it must be reachable.
ENV SCRIBE_WEB_SERVER__ADDRESS=0.0.0.0 \
    SCRIBE_DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 5000
ENTRYPOINT ["scribe"]
CMD ["serve"]
