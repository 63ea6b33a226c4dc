# Build stage: the Rust toolchain compiles the binary (DuckDB is bundled and
# compiled from source, which takes a while the first time).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock spec.json ./
COPY src ./src
RUN cargo build --release --locked && strip target/release/destination-duckdb

# Run stage: a slim Debian with only the binary.
FROM debian:bookworm-slim
COPY --from=build /src/target/release/destination-duckdb /usr/local/bin/destination-duckdb
# Relative destination_path values resolve under the /local mount, as with
# the official connector.
ENV DESTINATION_DUCKDB_LOCAL_ROOT=/local
ENV AIRBYTE_ENTRYPOINT="/usr/local/bin/destination-duckdb"
VOLUME /local
ENTRYPOINT ["/usr/local/bin/destination-duckdb"]
LABEL io.airbyte.name=airbyte/destination-duckdb-rs
LABEL io.airbyte.version=0.1.0
