# syntax=docker/dockerfile:1
# connect-operator image for Docker users: the release binary (glibc, dynamically linked, built on
# Debian bookworm) on distroless/cc-debian12:nonroot, non-root (uid 65532).
#   docker build -t ghcr.io/cloud-operators/connect-operator:0.1.0 .
# The same kind of image as `make image` (scripts/image/build.sh) assembles without a Docker daemon,
# reproducibly: there the base is made of pinned bookworm packages (scripts/image/debs.lock); here it
# is distroless's Debian 12 base, which carries what the binary needs at run time (libc6, libgcc-s1,
# the CA certificates, /etc/passwd with nonroot 65532) and no shell, plus libraries the operator does
# not load (libssl3, libstdc++6, libgomp1) and tzdata.
# Both stages are linux/amd64 (the binary is x86_64 glibc); on arm64 hosts BuildKit emulates.

ARG RUST_VERSION=1

FROM --platform=linux/amd64 rust:${RUST_VERSION}-bookworm AS build
ENV CARGO_TERM_COLOR=never
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# The workspace's other members (the Connect emulator): cargo reads their manifests to load the
# workspace; `--bin connect-operator` does not compile them.
COPY crates ./crates
# BuildKit cache mounts keep the crate downloads and compiled dependencies between builds. The
# release profile is the repository's (Cargo.toml: opt-level "z", fat LTO, panic = "abort"). The
# binary may need only the libraries distroless/cc has: libc, libm, libgcc_s and the loader (bookworm's
# glibc 2.36, as in Debian 12).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin connect-operator \
 && cp target/release/connect-operator /connect-operator \
 && /connect-operator --version \
 && ! ldd /connect-operator | grep -vE 'linux-vdso\.so|libc\.so\.6|libm\.so\.6|libgcc_s\.so\.1|ld-linux-x86-64\.so\.2'

FROM --platform=linux/amd64 gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="connect-operator" \
      org.opencontainers.image.description="Kubernetes operator for Amazon Connect security profiles" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/cloud-operators/connect-operator"
COPY --from=build /connect-operator /connect-operator
# distroless :nonroot already runs as 65532; numeric, so runAsNonRoot can verify it.
USER 65532:65532
# Where rustls-native-certs finds the CA bundle (distroless sets it too).
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
EXPOSE 8080
ENTRYPOINT ["/connect-operator"]
CMD ["run"]
