//! What depends on the guest architecture, kept apart from the generic
//! monitor (VM, vCPU loop, devices) so the rest reads without it.
//! Only x86_64 exists: the kvm engine runs where vessel runs.

pub mod x86_64;
