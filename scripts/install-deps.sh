#!/usr/bin/env bash
# Installs everything vessel's build, tests, demo and benchmarks need on a
# fresh Debian (bookworm) machine. Run as root.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends \
  build-essential pkg-config ca-certificates curl libelf-dev zlib1g-dev \
  python3 busybox-static util-linux mount iproute2 procps psmisc time strace kmod \
  runc crun podman conmon containernetworking-plugins fuse-overlayfs uidmap \
  containerd docker.io bsdutils \
  hyperfine fio e2fsprogs erofs-utils \
  sysbench dbench iperf3 bzip2 mariadb-server fonts-dejavu-core \
  qemu-system-x86 linux-image-cloud-amd64 cpio libc6-dev \
  protobuf-compiler criu
if ! command -v cargo >/dev/null 2>&1; then
  apt-get install -y -q cargo rustc
fi
