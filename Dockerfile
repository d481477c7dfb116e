# tokenbridge in a container: the release binary without the development provider
# (--no-default-features), run as a non-root user. Not built in CI (no container engine there);
# README.md ("Deployment files") shows how to build and run it.
#   docker build -t tokenbridge .

FROM rust:1.88-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpq-dev libmariadb-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --no-default-features \
 && strip target/release/tokenbridge

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpq5 libmariadb3 ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --create-home --home-dir /var/lib/tokenbridge tokenbridge
COPY --from=build /src/target/release/tokenbridge /usr/local/bin/tokenbridge
USER tokenbridge
WORKDIR /var/lib/tokenbridge
# Listen on every interface of the container (the host decides what is published); the
# metrics listener too, on its own port.
ENV TOKENBRIDGE_WEB__LISTEN=0.0.0.0:8080 \
    TOKENBRIDGE_WEB__METRICS_LISTEN=0.0.0.0:9464
EXPOSE 8080 9464
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s \
  CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["/usr/local/bin/tokenbridge"]
CMD ["serve"]
