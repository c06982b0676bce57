//! The few CPU operations the rest of the kernel builds on.

pub mod port;

/// Stops the CPU until the next interrupt.
pub fn halt() {
    x86_64::instructions::hlt();
}

/// Stops the CPU for good, with interrupts off.
pub fn halt_forever() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}

/// The hypervisor the kernel runs under, from CPUID leaf 0x4000_0000's signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hypervisor {
    /// Linux KVM ("KVMKVMKVM").
    Kvm,
    /// QEMU's software emulation ("TCGTCGTCGTCG").
    Tcg,
    /// Another hypervisor (its signature, 12 bytes).
    Other([u8; 12]),
    /// None reported (bare metal, or a hypervisor that hides itself).
    None,
}

/// Which hypervisor this is. Tests size their CPU-bound work with it: under some nested KVM
/// setups plain guest code runs thousands of times slower than under TCG.
pub fn hypervisor() -> Hypervisor {
    // CPUID.1:ECX bit 31: a hypervisor is present.
    let leaf1 = core::arch::x86_64::__cpuid(1);
    if leaf1.ecx & (1 << 31) == 0 {
        return Hypervisor::None;
    }
    let sig = core::arch::x86_64::__cpuid(0x4000_0000);
    let mut bytes = [0u8; 12];
    bytes[0..4].copy_from_slice(&sig.ebx.to_le_bytes());
    bytes[4..8].copy_from_slice(&sig.ecx.to_le_bytes());
    bytes[8..12].copy_from_slice(&sig.edx.to_le_bytes());
    match &bytes {
        b"KVMKVMKVM\0\0\0" => Hypervisor::Kvm,
        b"TCGTCGTCGTCG" => Hypervisor::Tcg,
        _ => Hypervisor::Other(bytes),
    }
}
