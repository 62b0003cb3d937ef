# Multi-stage build of the two images, for machines with a container registry:
#   docker build --target gateway -t headway .
#   docker build --target hello-service -t hello-service .
# (docker-compose.yml does both.) Machines without a registry use scripts/images.sh instead,
# which packs the same binaries into images with `docker import`.

FROM rust:1-bookworm AS builder
# pingora-core builds zlib-ng with cmake.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# `headway --version` names the commit; the build context has no .git (pass --build-arg).
ARG HEADWAY_COMMIT=unknown
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin headway --bin hello-service \
 && mkdir -p /out \
 && cp target/release/headway target/release/hello-service /out/ \
 && strip /out/headway /out/hello-service

FROM debian:bookworm-slim AS runtime
RUN groupadd --gid 10001 headway \
 && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin headway
USER 10001:10001

FROM runtime AS gateway
COPY --from=builder /out/headway /usr/local/bin/headway
COPY conf/compose/headway.yaml /etc/headway/headway.yaml
EXPOSE 8000 9901
ENTRYPOINT ["/usr/local/bin/headway"]
CMD ["-c", "/etc/headway/headway.yaml"]

FROM runtime AS hello-service
COPY --from=builder /out/hello-service /usr/local/bin/hello-service
ENV LISTEN_ADDR=0.0.0.0:8080 SERVICE_NAME=1
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/hello-service"]
