//! Fuzzes the used-ring path of both layouts: the input chooses tokens to dispatch and, acting
//! as the device, arbitrary values for used elements, `used.idx` and packed used descriptors.
//! The driver must never panic, and every token must come back exactly once (from `poll`, or
//! from `reset` after an error).

#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use vireo_virtio::{
    AvailBufferToken,
    BufferType,
    DmaBuffer,
    Notifier,
    PackedVq,
    SplitVq,
    Virtq,
    // Host memory, identity-mapped: the fuzzer is the device and writes through the addresses.
    mock::HostDma,
    negotiate,
    virtio_spec::F,
};

#[derive(Debug)]
struct Quiet;

impl Notifier for Quiet {
    fn notify(&self, _: u16, _: Option<u32>) {}
}

fn poke<T: Copy>(addr: u64, value: T) {
    // SAFETY: callers pass an address inside a live ring of the queue, computed from its ring
    // addresses and size, suitably aligned.
    unsafe { (addr as *mut T).write_volatile(value) }
}

fn token(tag: u64, readable: usize, writable: usize) -> AvailBufferToken<HostDma> {
    let buffer = |len: usize| DmaBuffer::new_zeroed_in(len, HostDma).unwrap();
    let r = (0..readable).map(|i| buffer(1 + i)).collect();
    let w = (0..writable).map(|i| buffer(8 + i)).collect();
    AvailBufferToken::new(r, w).with_tag(tag)
}

fuzz_target!(|data: &[u8]| {
    let mut bytes = data.iter().copied();
    let Some(first) = bytes.next() else { return };
    let packed = first & 1 != 0;
    let size = if packed {
        u16::from(first >> 1).max(1)
    } else {
        1 << (first >> 1) % 6
    };
    let mut wanted = F::INDIRECT_DESC | F::EVENT_IDX;
    if packed {
        wanted |= F::RING_PACKED;
    }
    if first & 0x80 != 0 {
        wanted |= F::IN_ORDER;
    }
    let features = negotiate(F::VERSION_1 | wanted, wanted).unwrap();
    let mut vq: Box<dyn Virtq<HostDma>> = if packed {
        Box::new(PackedVq::new(0, size, features, HostDma, Quiet).unwrap())
    } else {
        Box::new(SplitVq::new(0, size, features, HostDma, Quiet).unwrap())
    };
    let addrs = vq.ring_addresses();
    let mut in_flight = HashSet::new();
    let mut tag = 0u64;
    let mut next = || bytes.next().unwrap_or(0);
    for _ in 0..data.len() {
        let op = next();
        let arg = next();
        let slot = u64::from(u16::from(arg) % size);
        let id = u32::from(next()) % (u32::from(size) + 2);
        let len = u32::from(next());
        match op % 6 {
            0 => {
                let bt = if arg & 1 != 0 {
                    BufferType::Indirect
                } else {
                    BufferType::Direct
                };
                let readable = usize::from(arg >> 1 & 3);
                let writable = usize::from(arg >> 3 & 3);
                match vq.dispatch(token(tag, readable, writable), bt) {
                    Ok(_) => assert!(in_flight.insert(tag)),
                    Err(e) => assert_eq!(e.token.tag(), tag),
                }
                tag += 1;
            }
            1 if packed => {
                let base = addrs.descriptor_area + 16 * slot;
                poke(base + 8, len);
                poke(base + 12, id as u16);
            }
            1 => {
                let base = addrs.device_area + 4 + 8 * slot;
                poke(base, id);
                poke(base + 4, len);
            }
            2 if packed => {
                let flags = [0u16, 1 << 7, 1 << 15, 0x8080, 0x8082][usize::from(arg % 5)];
                poke(addrs.descriptor_area + 16 * slot + 14, flags);
            }
            2 => poke(addrs.device_area + 2, u16::from(arg) | (len as u16) << 8),
            3 | 4 => match vq.poll() {
                Ok(Some(used)) => {
                    assert!(in_flight.remove(&used.tag()));
                    let cap: usize = used.writable().iter().map(|b| b.len()).sum();
                    assert!(used.written_len() as usize <= cap);
                }
                Ok(None) => {}
                Err(_) => {
                    for t in vq.reset() {
                        assert!(in_flight.remove(&t.tag()));
                    }
                }
            },
            _ => {
                let _ = vq.enable_notifications();
            }
        }
    }
    for t in vq.reset() {
        assert!(in_flight.remove(&t.tag()));
    }
    assert!(in_flight.is_empty());
});
