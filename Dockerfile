# syntax=docker/dockerfile:1
# The channel-operator image: one static (musl) binary on distroless/static, running as uid 65532.
# The same image runs both containers of the Helm chart (`channel-operator controller` and
# `channel-operator api`).
#
#   docker build -t registry.example.com/channel-operator:0.1.0 .
#
# Without Docker, scripts/build-image builds the same runtime stage with buildah from a locally
# built binary (it derives its Containerfile from the stage below); CI builds and runs it that way.
#
# Multi-arch: `docker buildx build --platform linux/amd64,linux/arm64 ...` builds each platform
# natively (or under emulation); the musl target follows the build machine's architecture.

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# musl-tools: the C toolchain for the crypto crate (aws-lc-sys, the one crypto backend; cmake is
# its fallback builder); file: the static-binary check below. Versions come from the pinned Rust image's
# Debian release, so they are not pinned again here.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools cmake file \
 && rm -rf /var/lib/apt/lists/*
RUN rustup target add "$(uname -m)-unknown-linux-musl"
ENV CC_x86_64_unknown_linux_musl=musl-gcc \
    CC_aarch64_unknown_linux_musl=musl-gcc
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    target="$(uname -m)-unknown-linux-musl" \
 && cargo build --release --locked --no-default-features --target "$target" --bin channel-operator \
 && cp "target/$target/release/channel-operator" /channel-operator
# The runtime image has no libc: fail here, not at run time, if the binary is not static.
RUN file /channel-operator | grep -q 'static' && /channel-operator --version

FROM gcr.io/distroless/static-debian12:nonroot
# VERSION: the crate's version (tests/image.rs keeps the default equal to Cargo.toml's);
# SOURCE: where the source is published, e.g. --build-arg SOURCE="$(git remote get-url origin)".
ARG VERSION=0.1.0
ARG SOURCE=""
LABEL org.opencontainers.image.title="channel-operator" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /channel-operator /usr/local/bin/channel-operator
USER 65532:65532
# 8080: the channels HTTP API (api); 9090: metrics and probes (controller).
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/channel-operator"]
CMD ["--help"]
