# The bridge as a container image (used by docker-compose.kafka.yml).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin gzac-portal-bridge

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends libssl3 ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/gzac-portal-bridge /usr/local/bin/gzac-portal-bridge
USER 65532
ENTRYPOINT ["gzac-portal-bridge"]
CMD ["run"]
