# tickflow container image: a release build on Debian bookworm, run as an unprivileged user.
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libclang-dev libssl-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY schemas ./schemas
COPY config ./config
COPY benches ./benches
RUN cargo build --release --locked --bin tickflow

FROM debian:bookworm-slim
# fonts-dejavu-core: the text of `tickflow chart`.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /app tickflow
WORKDIR /app
COPY --from=build /src/target/release/tickflow /usr/local/bin/tickflow
COPY config ./config
COPY schemas ./schemas
COPY topologies ./topologies
COPY queries ./queries
RUN mkdir -p /app/state && chown tickflow /app/state
USER tickflow
# Prometheus metrics
EXPOSE 9464
ENTRYPOINT ["tickflow"]
CMD ["--help"]
