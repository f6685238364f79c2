# bitnet serve in a container: a multi-stage build of the one binary, run as
# a non-root user. The model is pulled at start into /models (a volume; the
# Kubernetes manifests use an init container) or baked into the image with
#   docker build --build-arg MODEL=microsoft/bitnet-b1.58-2B-4T-gguf .
# Without MODEL the image serves the built-in demo model unless -m is given.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p bitnet-cli \
 && strip target/release/bitnet \
 && install -D target/release/bitnet /out/bitnet

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /models --create-home bitnet
COPY --from=build /out/bitnet /usr/local/bin/bitnet
USER 10001
ENV HF_HOME=/models
ARG MODEL=
RUN if [ -n "$MODEL" ]; then bitnet pull "$MODEL"; fi
VOLUME /models
EXPOSE 8080
ENTRYPOINT ["bitnet"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
