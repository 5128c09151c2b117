# syntax=docker/dockerfile:1
#
# AlphaPulse container image: a release build in the Rust image, then a small Debian
# runtime with the binary, the shard maps and an entrypoint, run as a non-root user.
#
#   docker build -t alphapulse .
#   docker run --rm --ulimit memlock=-1 \
#     --security-opt seccomp=scripts/deploy/seccomp-io-uring.json \
#     -p 127.0.0.1:8000:8000 -e DASHBOARD_ALLOW_PUBLIC=true alphapulse demo
#
# The engine runs on io_uring. Docker's default seccomp profile blocks io_uring_setup,
# io_uring_enter and io_uring_register (since 2023), so run it with
# scripts/deploy/seccomp-io-uring.json (the default profile plus those three calls) or,
# bluntly, seccomp=unconfined; and allow it to lock memory for io_uring's registered
# buffers (--ulimit memlock=-1). docs/operations.md, "Containers", has the details.

# Debian release of both stages: the binary links the builder's glibc, so the runtime
# must be the same release (or newer).
ARG DEBIAN_RELEASE=trixie
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
# The Rust image carries the build dependencies: gcc and make for the C parts (glommio's
# liburing, mimalloc, ring) and binutils for objcopy.
# Extra compiler flags, e.g. "-C target-cpu=x86-64-v3" for a fleet of known CPUs; the
# default builds for any x86-64, as the image may run anywhere.
ARG RUSTFLAGS=""
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
# The git revision `alphapulse --version` shows; the build context has no .git, so pass
# it: --build-arg ALPHAPULSE_GIT_REV=$(git rev-parse --short HEAD). Empty: none.
ARG ALPHAPULSE_GIT_REV=""
# bench/ holds the [[bench]] targets the manifest names (cargo checks they exist);
# migrations/ is compiled into the binary (refinery's embed_migrations!).
COPY bench bench
COPY migrations migrations
COPY src src
# Line tables stay in the binary for perf and backtraces, compressed (about 50 MB to
# 21 MB).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    RUSTFLAGS="${RUSTFLAGS}" cargo build --release --locked --bin alphapulse \
    && install -D -m 0755 target/release/alphapulse /out/alphapulse \
    && objcopy --compress-debug-sections=zlib /out/alphapulse

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# The binary needs only glibc, libm and libgcc_s (all in the base image) and carries its
# own TLS roots and migrations. ca-certificates is there so BINANCE_TLS_CA_FILE can point
# at /etc/ssl/certs/ca-certificates.crt after a corporate proxy's CA is added the usual
# way (update-ca-certificates). bash runs the healthchecks (its /dev/tcp needs no curl).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates bash \
    && rm -rf /var/lib/apt/lists/*
# A fixed UID/GID so Kubernetes' runAsUser and volume ownership can name it.
RUN groupadd --system --gid 10001 alphapulse \
    && useradd --system --uid 10001 --gid alphapulse --home-dir /var/lib/alphapulse \
       --shell /usr/sbin/nologin alphapulse \
    && install -d -o alphapulse -g alphapulse -m 0750 /var/lib/alphapulse /var/lib/alphapulse/spool
COPY --from=build /out/alphapulse /usr/local/bin/alphapulse
COPY scripts/deploy/entrypoint.sh /usr/local/bin/alphapulse-entrypoint
COPY shards /usr/share/alphapulse/shards
COPY alphapulse.example.toml /usr/share/alphapulse/alphapulse.example.toml
USER 10001:10001
# The working directory holds the writer's spool (database.spool_dir defaults to
# "spool", relative to it) and is where the engine looks for a .env file.
WORKDIR /var/lib/alphapulse
ENV DASHBOARD_ADDR=0.0.0.0:8000 \
    DATABASE_SPOOL_DIR=/var/lib/alphapulse/spool
EXPOSE 8000
VOLUME ["/var/lib/alphapulse/spool"]
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["alphapulse-entrypoint", "healthcheck", "/healthz"]
ENTRYPOINT ["alphapulse-entrypoint"]
CMD ["run"]
