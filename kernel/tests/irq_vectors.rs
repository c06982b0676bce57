//! Dynamic vectors: allocation, a self-IPI reaching the handler, MSI messages, free and reuse, and
//! an ISA interrupt (the PIT) routed through the IOAPIC.

#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use core::{
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use vireo::{
    arch::port::Port,
    interrupts::{
        self, FIRST_DYNAMIC, LAST_DYNAMIC, VectorError, alloc_vector, free_vector, ioapic,
    },
    time::Instant,
};

vireo::test_main!(
    self_ipi_reaches_handler,
    msi_message_targets_boot_cpu,
    free_and_reuse,
    exhaustion_is_an_error,
    reserved_vectors_refused,
    ioapic_routes_the_pit,
    madt_describes_the_machine,
    ioapic_refuses_bad_routes,
    no_stray_interrupts,
);

static COUNTS: [AtomicU32; 256] = [const { AtomicU32::new(0) }; 256];

fn count(vector: u8) {
    COUNTS[usize::from(vector)].fetch_add(1, Ordering::SeqCst);
}

/// Waits (at most a second) until `vector` has been handled `n` times.
fn wait_for(vector: u8, n: u32) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(1) {
        if COUNTS[usize::from(vector)].load(Ordering::SeqCst) >= n {
            return true;
        }
        core::hint::spin_loop();
    }
    false
}

fn self_ipi_reaches_handler() {
    assert!(interrupts::are_enabled());
    let v = alloc_vector(count).unwrap();
    let n = v.number();
    assert!((FIRST_DYNAMIC..=LAST_DYNAMIC).contains(&n));
    for i in 1..=5 {
        interrupts::send_self_ipi(n).unwrap();
        assert!(wait_for(n, i), "self-IPI {i} on vector {n:#x} not handled");
    }
    assert_eq!(COUNTS[usize::from(n)].load(Ordering::SeqCst), 5);
    free_vector(v);
}

fn msi_message_targets_boot_cpu() {
    let v = alloc_vector(count).unwrap();
    let msg = v.msi_message().unwrap();
    let id = u64::from(interrupts::boot_apic_id());
    assert_eq!(msg.address, 0xfee0_0000 | (id << 12));
    assert_eq!(msg.data, u32::from(v.number()));
    free_vector(v);
}

fn free_and_reuse() {
    let a = alloc_vector(count).unwrap();
    let b = alloc_vector(count).unwrap();
    assert_ne!(a.number(), b.number());
    let na = a.number();
    free_vector(a);
    let c = alloc_vector(count).unwrap();
    assert_eq!(c.number(), na, "the freed vector is handed out again");
    let before = COUNTS[usize::from(na)].load(Ordering::SeqCst);
    interrupts::send_self_ipi(na).unwrap();
    assert!(wait_for(na, before + 1));
    free_vector(b);
    free_vector(c);
}

fn exhaustion_is_an_error() {
    let mut all = Vec::new();
    loop {
        match alloc_vector(count) {
            Ok(v) => all.push(v),
            Err(e) => {
                assert_eq!(e, VectorError::Exhausted);
                break;
            }
        }
    }
    assert_eq!(all.len(), usize::from(LAST_DYNAMIC - FIRST_DYNAMIC) + 1);
    for v in all {
        free_vector(v);
    }
    free_vector(alloc_vector(count).unwrap());
}

fn reserved_vectors_refused() {
    assert_eq!(interrupts::send_self_ipi(3), Err(VectorError::Reserved(3)));
    assert_eq!(interrupts::msi_message(31), Err(VectorError::Reserved(31)));
}

fn ioapic_routes_the_pit() {
    let v = alloc_vector(count).unwrap();
    let n = v.number();
    let gsi = ioapic::route_isa_irq(0, n).unwrap();
    vireo::println!("ISA IRQ 0 arrives on GSI {gsi}, vector {n:#x}");
    // SAFETY: ports 0x40 and 0x43 are the PIT's channel 0 and mode register; programming them only
    // changes the rate of IRQ 0.
    let (mut ch0, mut cmd) = unsafe { (Port::<u8>::new(0x40), Port::<u8>::new(0x43)) };
    // Channel 0, lobyte/hibyte, mode 2 (rate generator): 1193 cycles ≈ 1 ms.
    cmd.write(0b0011_0100);
    ch0.write((1193 & 0xff) as u8);
    ch0.write((1193 >> 8) as u8);
    let ok = wait_for(n, 5);
    ioapic::mask_gsi(gsi).unwrap();
    // Back to a one-shot that fires once and stops.
    cmd.write(0b0011_0000);
    ch0.write(1);
    ch0.write(0);
    // An interrupt already on its way when the line was masked lands on the handler, not on a
    // freed vector.
    vireo::time::sleep(Duration::from_millis(5));
    assert!(ok, "PIT interrupts did not arrive through the IOAPIC");
    free_vector(v);
}

fn madt_describes_the_machine() {
    let madt = interrupts::read_madt(vireo::boot_info().rsdp()).unwrap();
    // QEMU's q35: one IOAPIC at the PC address serving GSIs from 0, the PIT's IRQ 0 on GSI 2.
    assert_eq!(madt.local_apic, 0xfee0_0000);
    assert_eq!(madt.ioapics().len(), 1);
    assert_eq!(madt.ioapics()[0].address, 0xfec0_0000);
    assert_eq!(madt.ioapics()[0].gsi_base, 0);
    assert!(madt.overrides().iter().any(|o| o.irq == 0 && o.gsi == 2));
    assert_eq!(ioapic::isa_irq_gsi(0).0, 2);
    assert_eq!(ioapic::isa_irq_gsi(4), (4, ioapic::Trigger::EdgeHigh));
}

fn ioapic_refuses_bad_routes() {
    assert_eq!(
        ioapic::route_gsi(1000, 0x40, ioapic::Trigger::EdgeHigh),
        Err(ioapic::IoApicError::NoSuchGsi(1000))
    );
    assert_eq!(
        ioapic::route_gsi(4, 8, ioapic::Trigger::EdgeHigh),
        Err(ioapic::IoApicError::Vector(VectorError::Reserved(8)))
    );
    assert_eq!(
        ioapic::mask_gsi(24),
        Err(ioapic::IoApicError::NoSuchGsi(24))
    );
}

fn no_stray_interrupts() {
    // Nothing above raised a vector without a handler.
    assert_eq!(interrupts::unexpected_interrupts(), 0);
    vireo::println!("{} spurious interrupts", interrupts::spurious_interrupts());
}
