//! Device models for the kvm engine.
//!
//! The vCPU threads dispatch every port-IO and MMIO exit to a [`Bus`],
//! which finds the [`BusDevice`] whose range holds the address. The legacy
//! devices ([`serial`], [`i8042`], [`acpi_pm`]) sit on the port-IO bus; the virtio
//! devices ([`virtio`]) sit on the MMIO bus behind the virtio-mmio
//! transport. The kvm engine's device manager
//! (`engine::kvm::device_manager`) creates them and registers them.

pub mod acpi_pm;
pub mod bus;
pub mod i8042;
pub mod serial;
pub mod virtio;

pub use bus::{Bus, BusDevice, BusError};
