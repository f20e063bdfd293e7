# syntax=docker/dockerfile:1
# tickflow container image: a release build on Debian bookworm, run as an unprivileged user.
#
#   docker build -t tickflow .                                    # production: no embedded broker
#   docker build --build-arg FEATURES=embedded-broker -t tickflow-demo .   # with `demo`/`broker`
#
# The build keeps cargo's registry and target directory in BuildKit cache mounts, so a
# rebuild after a source change compiles tickflow alone, not its ~700 dependencies.
FROM rust:1.95-bookworm AS build
# libclang: RocksDB's bindings; g++: RocksDB; libssl/libsasl2: librdkafka's TLS and SASL.
RUN apt-get update && apt-get install -y --no-install-recommends \
        libclang-dev g++ pkg-config libssl-dev libsasl2-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Everything the build reads: the manifest, the sources, and the files compiled into the
# binary (schemas, the symbol universe, the demo's topologies and saved query). benches/
# is needed because Cargo.toml names the benchmark targets.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY schemas ./schemas
COPY config ./config
COPY topologies ./topologies
COPY queries ./queries
COPY benches ./benches
ARG FEATURES=""
# The git revision `tickflow_build_info` reports: --build-arg GIT_REVISION=$(git rev-parse HEAD)
ARG GIT_REVISION=unknown
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    TICKFLOW_GIT_REVISION="$GIT_REVISION" cargo build --release --locked --bin tickflow --no-default-features --features "$FEATURES" \
    && cp target/release/tickflow /usr/local/bin/tickflow

FROM debian:bookworm-slim
# libssl3, libsasl2-2: librdkafka (TLS, SASL); fonts-dejavu-core: the text of `tickflow chart`.
RUN apt-get update && apt-get install -y --no-install-recommends \
        ca-certificates libssl3 libsasl2-2 fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /app tickflow
WORKDIR /app
COPY --from=build /usr/local/bin/tickflow /usr/local/bin/tickflow
COPY config ./config
COPY schemas ./schemas
COPY topologies ./topologies
COPY queries ./queries
# State (RocksDB stores) and a local lake are the only places written; mount volumes there.
RUN mkdir -p /app/state /app/lake && chown tickflow:tickflow /app/state /app/lake
VOLUME ["/app/state", "/app/lake"]
USER tickflow
# Prometheus metrics, reachable from outside the container.
ENV TICKFLOW_METRICS__ADDR=0.0.0.0:9464 \
    TICKFLOW_STATE__DIR=/app/state
EXPOSE 9464
# SIGTERM drains: a final commit of state and offsets, and the lake's open files. Give the
# container time for it (docker run --stop-timeout 60, or stop_grace_period in compose);
# after the timeout Docker sends SIGKILL, which loses no data but replays since the last commit.
STOPSIGNAL SIGTERM
# Healthy while /healthz answers 200: no stage of `tickflow run` has failed. Run one-off
# commands (simulate, query) with --no-healthcheck.
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9464 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["tickflow"]
CMD ["--help"]
