# vessel: the two commands of the README and a few helpers.
.PHONY: setup build release shim demo test bench fmt clippy

setup:
	./scripts/install-deps.sh

build:
	cargo build --workspace

# vessel is linked statically (glibc, static-pie): no dynamic loader work on
# each of its two execs per create, and fewer mapped pages (measured: 9.3 vs
# 11.2 ms per run of /bin/true, 4.4 vs 5.4 MB peak RSS). --target keeps
# the flag off build scripts and proc macros.
STATIC_TARGET := x86_64-unknown-linux-gnu

release:
	RUSTFLAGS="-C target-feature=+crt-static" cargo build --release -p vessel --target $(STATIC_TARGET)
	install -D -m 0755 target/$(STATIC_TARGET)/release/vessel target/release/vessel

# The containerd shim, static like vessel (its RSS per container is the
# figure that matters; the release profile builds it for size).
shim:
	RUSTFLAGS="-C target-feature=+crt-static" cargo build --release -p containerd-shim-vessel --target $(STATIC_TARGET)
	install -D -m 0755 target/$(STATIC_TARGET)/release/containerd-shim-vessel-v2 target/release/containerd-shim-vessel-v2

demo: release
	./scripts/demo.sh

# Unit tests, real-kernel tests and real-client tests (podman, containerd,
# docker) against the freshly built binary. Needs root. vm-mode tests run
# the static release build (the guest agent must be static).
# host-check snapshots the host (mounts, cgroups, netns, links, loop
# devices, processes) before the suite and compares after it, whatever the
# suite's result: the target fails if the tests fail or the host changed.
HOST_CHECK := target/debug/host-check
HOST_SNAPSHOT := target/host-check/before.json

test: build release
	cargo build -p vessel-tests --bin host-check
	$(HOST_CHECK) save $(HOST_SNAPSHOT)
	@status=0; \
	cargo test --workspace --no-fail-fast -- --test-threads=2 || status=$$?; \
	$(HOST_CHECK) compare $(HOST_SNAPSHOT) || status=1; \
	exit $$status

bench: release
	cargo build --release -p vessel-bench
	./target/release/vessel-bench lifecycle --vessel target/release/vessel

fmt:
	cargo fmt --all

clippy:
	cargo clippy --workspace --all-targets -- -D warnings
