# The Airbyte destination image; build it with the README's command (section
# "Docker and Airbyte"). It needs BuildKit for the cache mounts below: Docker
# 23 and later use it by default, older ones with DOCKER_BUILDKIT=1.

# Build stage: the Rust toolchain compiles the binary. DuckDB is bundled and
# compiled from source: about 25 minutes on 2 cores the first time. The cargo
# registry and the target folder are BuildKit cache mounts, kept by the
# builder between builds, so a rebuild after a source change recompiles the
# crate and not DuckDB.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock spec.json ./
COPY src ./src
RUN --mount=type=cache,id=destination-duckdb-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=destination-duckdb-target,target=/src/target,sharing=locked \
    cargo build --release --locked \
    && strip -o /destination-duckdb target/release/destination-duckdb

# Run stage: a slim Debian (it has the sh, sleep, kill and mv that Airbyte's
# launcher wraps the connector in) with the binary and nothing else: no
# compiler, no Rust toolchain.
FROM debian:bookworm-slim
# Airbyte's own convention: user `airbyte`, uid and gid 1000, owning /airbyte.
# /local is where users mount the folder for the database. It belongs to
# airbyte in the image, so an unmounted /local (an anonymous volume, which
# copies it) is writable; a mounted host folder keeps its own owner.
RUN groupadd --gid 1000 airbyte \
    && useradd --uid 1000 --gid 1000 --home-dir /airbyte --create-home --shell /bin/sh airbyte \
    && mkdir /local \
    && chown airbyte:airbyte /local
COPY --from=build /destination-duckdb /usr/local/bin/destination-duckdb
# Relative destination_path values resolve under the /local mount, as with
# the official connector.
ENV DESTINATION_DUCKDB_LOCAL_ROOT=/local
ENV AIRBYTE_ENTRYPOINT="/usr/local/bin/destination-duckdb"
VOLUME /local
WORKDIR /airbyte
USER 1000:1000
ENTRYPOINT ["/usr/local/bin/destination-duckdb"]
# The version is the crate's (Cargo.toml); tests/packaging.rs fails when this
# label, metadata.yaml's dockerImageTag or the README's build command differ.
LABEL io.airbyte.name=airbyte/destination-duckdb-rs
LABEL io.airbyte.version=0.1.0
