# One image for both workloads: `kubemaker-remoted`, the daemon's own binary (DaemonSet; the
# default command), and `kubemaker controller` (the chart's Deployment names it).
# The runtime's Debian release decides the Pacemaker tools in the pod, which must follow the
# cluster (scripts/build-image.sh --suite says why): bookworm (default) for 2.1 clusters,
# `--build-arg DEBIAN_SUITE=sid` (tag it 0.1.0-pacemaker3; Pacemaker 3.0.3's tools) for 3.0 clusters.
# The binary is built on bookworm for both; sid's libraries are newer and keep the same sonames.
ARG DEBIAN_SUITE=bookworm
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libgnutls28-dev libqb-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin kubemaker --bin kubemaker-remoted

FROM debian:${DEBIAN_SUITE}-slim
# The runtime packages (the libraries the binary links, resource-agents, pacemaker-cli-utils, ...) are
# listed, with the reasons, in image/packages.txt, which scripts/build-image.sh (the image without
# Docker) installs too; tests/image_packages.rs keeps this file from naming packages of its own.
COPY image/packages.txt /tmp/packages.txt
RUN apt-get update && apt-get install -y --no-install-recommends $(sed 's/#.*//' /tmp/packages.txt) \
    && rm -rf /var/lib/apt/lists/* /tmp/packages.txt \
    && rm -f /etc/pacemaker/authkey
# (pacemaker-common's install script generates an authkey: an image must not carry a key; the pods
# mount the Secret there)
COPY --from=build /src/target/release/kubemaker /src/target/release/kubemaker-remoted /usr/sbin/
RUN ln -s kubemaker-remoted /usr/sbin/pacemaker-remoted
EXPOSE 3121
CMD ["/usr/sbin/kubemaker-remoted"]
