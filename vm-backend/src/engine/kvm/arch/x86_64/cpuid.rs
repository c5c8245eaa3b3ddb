//! The CPUID a vCPU reports: what KVM supports, adjusted for a VM.
//!
//! Starting from `KVM_GET_SUPPORTED_CPUID` (which already carries KVM's
//! paravirtual leaves 0x4000_0000.., kvm-clock among them), each vCPU gets
//! the hypervisor bit, its own APIC id, and a topology of `n` single-thread
//! cores in one package (leaves 1, 4, 0xb and 0x1f), so the guest's scheduler
//! sees what the VM really has.

use kvm_bindings::kvm_cpuid_entry2;

/// Leaf 1 ECX: running under a hypervisor.
pub const HYPERVISOR_BIT: u32 = 1 << 31;
/// Leaf 1 EDX: more than one logical processor per package.
const HTT_BIT: u32 = 1 << 28;
/// KVM's paravirtual features leaf.
pub const KVM_FEATURES_LEAF: u32 = 0x4000_0001;
/// Leaf 0x4000_0001 EAX: the kvm-clock MSRs at 0x4b564d00.. (clocksource2).
pub const KVM_FEATURE_CLOCKSOURCE2: u32 = 1 << 3;

/// Bits needed to number `n` items.
fn bits_for(n: u32) -> u32 {
    32 - n.saturating_sub(1).leading_zeros()
}

/// Adjusts `entries` for vCPU `id` of `count`.
pub fn adjust(entries: &mut [kvm_cpuid_entry2], id: u32, count: u32) {
    for e in entries.iter_mut() {
        match e.function {
            1 => {
                e.ecx |= HYPERVISOR_BIT;
                // EBX[31:24] initial APIC id, [23:16] logical processors
                // per package, [15:8] CLFLUSH line size in 8-byte units.
                e.ebx = (id << 24) | ((count & 0xff) << 16) | (8 << 8);
                if count > 1 {
                    e.edx |= HTT_BIT;
                } else {
                    e.edx &= !HTT_BIT;
                }
            }
            4 => {
                // Deterministic cache parameters: EAX[31:26] cores per
                // package - 1; [25:14] threads sharing the cache - 1 (the
                // last level is shared by all cores).
                let level = (e.eax >> 5) & 0x7;
                let sharing = if level >= 3 {
                    count.saturating_sub(1)
                } else {
                    0
                };
                e.eax = (e.eax & 0x3ff) | (sharing << 14) | (count.saturating_sub(1) << 26);
            }
            0xb | 0x1f => {
                // Extended topology: level 0 threads (one per core), level
                // 1 cores; EDX is the x2APIC id.
                e.edx = id;
                match e.index {
                    0 => {
                        e.eax = 0;
                        e.ebx = 1;
                        e.ecx = 1 << 8;
                    }
                    1 => {
                        e.eax = bits_for(count);
                        e.ebx = count;
                        e.ecx = (2 << 8) | 1;
                    }
                    n => {
                        e.eax = 0;
                        e.ebx = 0;
                        e.ecx = n;
                    }
                }
            }
            _ => {}
        }
    }
}

/// Whether `entries` offer kvm-clock to the guest.
pub fn has_kvm_clock(entries: &[kvm_cpuid_entry2]) -> bool {
    entries
        .iter()
        .any(|e| e.function == KVM_FEATURES_LEAF && e.eax & KVM_FEATURE_CLOCKSOURCE2 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(function: u32, index: u32, eax: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            eax,
            edx: HTT_BIT,
            ..Default::default()
        }
    }

    #[test]
    fn sets_hypervisor_bit_apic_id_and_topology() {
        let mut e = vec![
            entry(1, 0, 0x806f8),
            entry(4, 0, (1 << 5) | 0x1),
            entry(4, 3, (3 << 5) | 0x3),
            entry(0xb, 0, 0),
            entry(0xb, 1, 0),
            entry(0xb, 2, 0),
            entry(KVM_FEATURES_LEAF, 0, KVM_FEATURE_CLOCKSOURCE2),
        ];
        adjust(&mut e, 2, 3);
        assert_ne!(e[0].ecx & HYPERVISOR_BIT, 0);
        assert_eq!(e[0].ebx >> 24, 2);
        assert_eq!((e[0].ebx >> 16) & 0xff, 3);
        assert_ne!(e[0].edx & HTT_BIT, 0);
        assert_eq!(e[1].eax >> 26, 2);
        assert_eq!((e[1].eax >> 14) & 0xfff, 0, "L1 is per core");
        assert_eq!((e[2].eax >> 14) & 0xfff, 2, "L3 shared by the 3 cores");
        assert_eq!((e[4].eax, e[4].ebx, e[4].ecx, e[4].edx), (2, 3, 0x201, 2));
        assert_eq!((e[3].ebx, e[5].ebx, e[5].ecx), (1, 0, 2));
        assert!(has_kvm_clock(&e));

        adjust(&mut e, 0, 1);
        assert_eq!(e[0].edx & HTT_BIT, 0);
        assert_eq!(e[4].eax, 0);
    }

    #[test]
    fn bits_for_counts() {
        assert_eq!([1, 2, 3, 4, 5, 8, 9].map(bits_for), [0, 1, 2, 2, 3, 3, 4]);
    }
}
