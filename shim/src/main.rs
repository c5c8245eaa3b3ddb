//! `containerd-shim-vessel-v2`: see the `vessel_shim` library.

fn main() {
    containerd_shim::run::<vessel_shim::service::VesselShim>(vessel_shim::RUNTIME_ID, None);
}
