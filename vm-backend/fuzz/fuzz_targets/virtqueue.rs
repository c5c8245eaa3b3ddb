//! Arbitrary guest memory and register traffic against the virtio devices
//! (see `vessel_vm::devices::virtio::fuzzing`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    vessel_vm::devices::virtio::fuzzing::exercise(data);
});
