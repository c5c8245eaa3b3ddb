//! x86_64: the guest memory map, the CPUID and boot register state of a
//! vCPU, the direct kernel boot protocols and the ACPI tables.

pub mod acpi;
pub mod boot;
pub mod cpu;
pub mod cpuid;
pub mod layout;
