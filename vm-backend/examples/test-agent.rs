//! A guest init for tests: the vessel agent alone, with the default
//! options. Build it statically and use it as the initramfs's `/init`:
//!
//! ```text
//! RUSTFLAGS="-C target-feature=+crt-static" \
//!     cargo build -p vessel-vm --example test-agent --target x86_64-unknown-linux-gnu
//! ```

fn main() {
    vessel_vm::agent::guest::run()
}
