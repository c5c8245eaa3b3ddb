# vessel: the two commands of the README and a few helpers.
.PHONY: setup build release demo test bench fmt clippy

setup:
	./scripts/install-deps.sh

build:
	cargo build --workspace

release:
	cargo build --release -p vessel

demo: release
	./scripts/demo.sh

# Unit tests, real-kernel tests and real-client tests (podman, containerd,
# docker) against the freshly built binary. Needs root.
test: build
	cargo test --workspace -- --test-threads=2

bench: release
	cargo build --release -p vessel-bench
	./target/release/vessel-bench lifecycle

fmt:
	cargo fmt --all

clippy:
	cargo clippy --workspace --all-targets
