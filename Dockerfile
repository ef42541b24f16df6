# The bridge as a container image: built in one stage, shipped in a distroless one that holds the
# binary, glibc and libgcc, and CA certificates — no shell, no package manager, no OpenSSL (it is
# compiled into the binary, like zlib: `tests/cli.rs` holds that the binary links nothing else).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin gzac-portal-bridge

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/gzac-portal-bridge /usr/local/bin/gzac-portal-bridge
# 65532: distroless's `nonroot`; the Kubernetes manifests run it read-only, without capabilities.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/gzac-portal-bridge"]
CMD ["run"]
