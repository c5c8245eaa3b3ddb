//! `containerd-shim-vessel-v2`: see the `vessel_shim` library.

fn main() {
    // One malloc arena: the shim's threads (ttrpc connections, the
    // reaper, exit and IO watchers) each get an arena of their own
    // otherwise, a few hundred KiB of RSS per shim for no gain at its
    // request rate.
    // SAFETY: mallopt only sets an allocator parameter; no threads exist
    // yet, so nothing allocates concurrently.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    containerd_shim::run::<vessel_shim::service::VesselShim>(vessel_shim::RUNTIME_ID, None);
}
