# syntax=docker/dockerfile:1
# connect-operator image: a static (musl) binary on distroless/static, non-root (uid 65532).
#   docker build -t ghcr.io/cloud-operators/connect-operator:0.1.0 .
# Both stages are linux/amd64 (the binary is x86_64 musl); on arm64 hosts BuildKit emulates.
# distroless/static carries CA certificates and /etc/passwd, and no shell.

ARG RUST_VERSION=1

FROM --platform=linux/amd64 rust:${RUST_VERSION}-bookworm AS build
ARG TARGET=x86_64-unknown-linux-musl
# musl-gcc compiles aws-lc (rustls' crypto provider) for the musl target.
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add "${TARGET}"
ENV CC_x86_64_unknown_linux_musl=musl-gcc \
    CARGO_TERM_COLOR=never
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# The workspace's other members (the Connect emulator): cargo reads their manifests to load the
# workspace; `--bin connect-operator` does not compile them.
COPY crates ./crates
# BuildKit cache mounts keep the crate downloads and compiled dependencies between builds.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin connect-operator --target "${TARGET}" \
 && cp "target/${TARGET}/release/connect-operator" /connect-operator \
 && (ldd /connect-operator 2>&1 | grep -Eq 'not a dynamic executable|statically linked') \
 && /connect-operator --version

FROM --platform=linux/amd64 gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="connect-operator" \
      org.opencontainers.image.description="Kubernetes operator for Amazon Connect security profiles" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/cloud-operators/connect-operator"
COPY --from=build /connect-operator /connect-operator
# distroless :nonroot already runs as 65532; numeric, so runAsNonRoot can verify it.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/connect-operator"]
CMD ["run"]
