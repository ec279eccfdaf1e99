# syntax=docker/dockerfile:1
# Multi-stage build: compile in the Rust image, ship a slim Debian image with
# only the `scribe` binary. Build with: docker build -t scribe .
# (pass --build-arg SCRIBE_GIT_HASH=$(git rev-parse HEAD) to record the commit)

FROM rust:1-bookworm AS build
ARG SCRIBE_GIT_HASH=unknown
ENV SCRIBE_GIT_HASH=${SCRIBE_GIT_HASH}
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin scribe \
    && cp target/release/scribe /usr/local/bin/scribe

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
