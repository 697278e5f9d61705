# The logferry daemon as a container: follows the tenant streams and the
# inbox, fires the [[schedule]] entries, serves /healthz, /readyz and
# /metrics on port 9464.
#
#   docker build -t logferry .
#   docker run -v $PWD/logferry.toml:/etc/logferry/logferry.toml:ro \
#     -e AWS_REGION=us-east-1 -e GOOGLE_APPLICATION_CREDENTIALS=/etc/logferry/gcp-key.json \
#     -p 9464:9464 logferry
#
# Configuration: the file at LOGFERRY_CONFIG (mount it), then LOGFERRY__*
# environment overrides (LOGFERRY__STORAGE__LAKE=s3://..., for example).
# State that must survive a restart lives in the lake (S3); the data
# directory holds spill files and the embedded default only.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
# The registry and the target directory are cache mounts: a rebuild after a
# source change compiles logferry, not its dependencies.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p logferry --bin logferry \
    && cp target/release/logferry /usr/local/bin/logferry

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/logferry --create-home logferry \
    && mkdir -p /etc/logferry
COPY --from=build /usr/local/bin/logferry /usr/local/bin/logferry
USER 10001:10001
ENV LOGFERRY_DATA_DIR=/var/lib/logferry \
    LOGFERRY_CONFIG=/etc/logferry/logferry.toml \
    MALLOC_ARENA_MAX=2
VOLUME ["/var/lib/logferry"]
EXPOSE 9464
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD curl -fsS http://127.0.0.1:9464/healthz || exit 1
ENTRYPOINT ["/usr/local/bin/logferry"]
CMD ["daemon", "--listen", "0.0.0.0:9464"]
