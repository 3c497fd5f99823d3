# One image for both workloads: `kubemaker remoted` (DaemonSet) and `kubemaker controller`.
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libgnutls28-dev libqb-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin kubemaker

FROM debian:bookworm-slim
# resource-agents: the OCF agents the cluster schedules here; the runtime libraries the binary links;
# pacemaker-cli-utils so crm_mon and friends work inside the pod through the IPC proxy.
RUN apt-get update && apt-get install -y --no-install-recommends \
        libgnutls30 libqb100 resource-agents pacemaker-cli-utils procps iproute2 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/kubemaker /usr/sbin/kubemaker
RUN ln -s kubemaker /usr/sbin/pacemaker-remoted
EXPOSE 3121
ENTRYPOINT ["/usr/sbin/kubemaker"]
CMD ["remoted"]
