//! A hostile device: one test per rule of the untrusted-device contract, on both layouts, then a
//! randomised device corrupting used entries, indices and flags.

mod support;

use support::{
    CountingNotifier, GuestDma, SimDevice as _, check_used, make_token,
    packed_device::PackedDevice, vmm_device::VmmDevice,
};
use vireo_virtio::{BufferType, PackedVq, QueueError, SplitVq, Virtq, negotiate, virtio_spec::F};
use vm_memory::{Bytes, GuestAddress};

type Split = SplitVq<GuestDma, CountingNotifier>;
type Packed = PackedVq<GuestDma, CountingNotifier>;

fn features(packed: bool) -> F {
    let wanted = if packed {
        F::RING_PACKED | F::INDIRECT_DESC
    } else {
        F::INDIRECT_DESC
    };
    negotiate(F::VERSION_1 | wanted, wanted).unwrap()
}

fn split(size: u16) -> (GuestDma, Split) {
    let dma = GuestDma::new(4 << 20);
    let vq = SplitVq::new(
        0,
        size,
        features(false),
        dma.clone(),
        CountingNotifier::default(),
    );
    (dma, vq.unwrap())
}

fn packed(size: u16) -> (GuestDma, Packed) {
    let dma = GuestDma::new(4 << 20);
    let vq = PackedVq::new(
        0,
        size,
        features(true),
        dma.clone(),
        CountingNotifier::default(),
    );
    (dma, vq.unwrap())
}

fn poke<T: vm_memory::ByteValued>(dma: &GuestDma, addr: u64, value: T) {
    dma.mem().write_obj(value, GuestAddress(addr)).unwrap();
}

/// Split: writes used element `slot` and then `used.idx`.
fn split_used(dma: &GuestDma, vq: &Split, slot: u16, id: u32, len: u32, idx: u16) {
    let used = vq.ring_addresses().device_area;
    poke(dma, used + 4 + 8 * u64::from(slot), id);
    poke(dma, used + 8 + 8 * u64::from(slot), len);
    poke(dma, used + 2, idx);
}

/// Packed: writes a used descriptor at ring position `pos`.
fn packed_used(dma: &GuestDma, vq: &Packed, pos: u16, id: u16, len: u32, flags: u16) {
    let ring = vq.ring_addresses().descriptor_area + 16 * u64::from(pos);
    poke(dma, ring + 12, id);
    poke(dma, ring + 8, len);
    poke(dma, ring + 14, flags);
}

/// The error repeats (the queue is unchanged), and reset hands back every token exactly once.
fn assert_sticky<V: Virtq<GuestDma>>(vq: &mut V, error: QueueError, tags: &[u64]) {
    assert_eq!(vq.poll().unwrap_err(), error);
    assert_eq!(vq.poll().unwrap_err(), error);
    let mut back: Vec<u64> = vq.reset().iter().map(|t| t.tag()).collect();
    back.sort_unstable();
    assert_eq!(back, tags);
    assert_eq!(vq.free_descriptors(), vq.size());
}

const USED: u16 = (1 << 7) | (1 << 15);
const WRITE: u16 = 2;

#[test]
fn split_used_id_out_of_range() {
    let (dma, mut vq) = split(8);
    vq.dispatch(make_token(&dma, &[1], &[4], 0), BufferType::Direct)
        .unwrap();
    split_used(&dma, &vq, 0, 8, 0, 1);
    assert_sticky(&mut vq, QueueError::UsedIdOutOfRange { id: 8 }, &[0]);
}

#[test]
fn split_used_id_not_in_flight_and_no_double_return() {
    let (dma, mut vq) = split(8);
    vq.dispatch(make_token(&dma, &[1, 1], &[4], 0), BufferType::Direct)
        .unwrap();
    // Descriptor 1 is the middle of the chain, not a head.
    split_used(&dma, &vq, 0, 1, 0, 1);
    assert_eq!(
        vq.poll().unwrap_err(),
        QueueError::UsedIdNotInFlight { id: 1 }
    );
    // The honest entry, then the same id a second time.
    split_used(&dma, &vq, 0, 0, 0, 1);
    assert_eq!(vq.poll().unwrap().unwrap().tag(), 0);
    vq.dispatch(make_token(&dma, &[1], &[], 1), BufferType::Direct)
        .unwrap();
    split_used(&dma, &vq, 1, 0, 0, 2);
    assert_sticky(&mut vq, QueueError::UsedIdNotInFlight { id: 0 }, &[1]);
}

#[test]
fn split_written_length_too_large() {
    let (dma, mut vq) = split(8);
    vq.dispatch(make_token(&dma, &[1], &[4, 5], 0), BufferType::Indirect)
        .unwrap();
    split_used(&dma, &vq, 0, 0, 10, 1);
    assert_sticky(
        &mut vq,
        QueueError::WrittenLenTooLarge {
            len: 10,
            capacity: 9,
        },
        &[0],
    );
}

#[test]
fn split_used_index_runs_ahead() {
    let (dma, mut vq) = split(8);
    vq.dispatch(make_token(&dma, &[1], &[], 0), BufferType::Direct)
        .unwrap();
    split_used(&dma, &vq, 0, 0, 0, 2);
    let error = QueueError::UsedIndexAhead {
        used_idx: 2,
        last_used_idx: 0,
    };
    assert_sticky(&mut vq, error, &[0]);
}

#[test]
#[cfg_attr(miri, ignore = "65535 round trips are too slow under Miri")]
fn split_used_index_runs_ahead_across_the_u16_wrap() {
    let (dma, mut vq) = split(8);
    let mut token = Some(make_token(&dma, &[1], &[], 0));
    // An honest device for 65535 buffers: last_used_idx ends at 0xffff.
    for i in 0..0xffffu16 {
        vq.dispatch(token.take().unwrap(), BufferType::Direct)
            .unwrap();
        split_used(&dma, &vq, i % 8, u32::from(i % 8), 0, i.wrapping_add(1));
        token = Some(vq.poll().unwrap().unwrap().into_avail());
    }
    vq.dispatch(token.take().unwrap(), BufferType::Direct)
        .unwrap();
    // 0xffff → 5 is six entries ahead with one in flight.
    split_used(&dma, &vq, 7, 7, 0, 5);
    let error = QueueError::UsedIndexAhead {
        used_idx: 5,
        last_used_idx: 0xffff,
    };
    assert_sticky(&mut vq, error, &[0]);
}

#[test]
fn split_looping_chain_in_shared_memory_is_never_followed() {
    // The driver keeps each chain's links in private memory; a device rewriting the shared
    // descriptors into a loop changes nothing the driver reads.
    let (dma, mut vq) = split(4);
    vq.dispatch(make_token(&dma, &[1, 2], &[3], 0), BufferType::Direct)
        .unwrap();
    let desc = vq.ring_addresses().descriptor_area;
    for i in 0..4u64 {
        poke(&dma, desc + 16 * i + 12, 1u16); // NEXT
        poke(&dma, desc + 16 * i + 14, i as u16); // next = itself
    }
    split_used(&dma, &vq, 0, 0, 3, 1);
    let used = vq.poll().unwrap().unwrap();
    assert_eq!(used.tag(), 0);
    assert_eq!(vq.free_descriptors(), 4);
    // The free list is intact: the whole ring can be used again, and honestly served.
    drop(used);
    let mut dev = VmmDevice::new(&dma, vq.ring_addresses(), 4, false);
    assert!(vq.reset().is_empty());
    vq.dispatch(make_token(&dma, &[1, 1, 1], &[2], 1), BufferType::Direct)
        .unwrap();
    let p = dev.pop_all();
    dev.complete(&p[0]);
    check_used(&vq.poll().unwrap().unwrap());
}

#[test]
fn packed_used_id_out_of_range() {
    let (dma, mut vq) = packed(5);
    vq.dispatch(make_token(&dma, &[1], &[4], 0), BufferType::Direct)
        .unwrap();
    packed_used(&dma, &vq, 0, 5, 0, USED);
    assert_sticky(&mut vq, QueueError::UsedIdOutOfRange { id: 5 }, &[0]);
}

#[test]
fn packed_used_id_not_in_flight() {
    let (dma, mut vq) = packed(5);
    vq.dispatch(make_token(&dma, &[1], &[4], 0), BufferType::Direct)
        .unwrap();
    packed_used(&dma, &vq, 0, 3, 0, USED);
    assert_sticky(&mut vq, QueueError::UsedIdNotInFlight { id: 3 }, &[0]);
}

#[test]
fn packed_written_length_too_large() {
    let (dma, mut vq) = packed(5);
    vq.dispatch(make_token(&dma, &[1], &[4], 0), BufferType::Direct)
        .unwrap();
    packed_used(&dma, &vq, 0, 0, 5, USED | WRITE);
    assert_sticky(
        &mut vq,
        QueueError::WrittenLenTooLarge {
            len: 5,
            capacity: 4,
        },
        &[0],
    );
}

#[test]
fn packed_used_descriptor_with_nothing_in_flight() {
    let (dma, mut vq) = packed(5);
    packed_used(&dma, &vq, 0, 0, 0, USED);
    assert_sticky(&mut vq, QueueError::UsedWithoutInFlight, &[]);
}

#[test]
fn packed_wrong_wrap_bit_or_half_used_flags_match_nothing() {
    let (dma, mut vq) = packed(5);
    vq.dispatch(make_token(&dma, &[1], &[4], 0), BufferType::Direct)
        .unwrap();
    // AVAIL = USED = 0: "used" in the previous lap, not this one.
    packed_used(&dma, &vq, 0, 0, 0, 0);
    assert!(vq.poll().unwrap().is_none());
    // AVAIL != USED: still available, not used.
    packed_used(&dma, &vq, 0, 0, 0, 1 << 15);
    assert!(vq.poll().unwrap().is_none());
    packed_used(&dma, &vq, 0, 0, 0, 1 << 7);
    assert!(vq.poll().unwrap().is_none());
    assert_eq!(vq.in_flight(), 1);
    // The real thing works.
    packed_used(&dma, &vq, 0, 0, 0, USED);
    assert_eq!(vq.poll().unwrap().unwrap().tag(), 0);
}

#[test]
fn packed_double_completion_is_rejected() {
    let (dma, mut vq) = packed(4);
    let mut dev = PackedDevice::new(dma.mem(), vq.ring_addresses(), 4);
    vq.dispatch(make_token(&dma, &[1], &[1], 0), BufferType::Direct)
        .unwrap();
    vq.dispatch(make_token(&dma, &[1], &[1], 1), BufferType::Direct)
        .unwrap();
    let p = dev.pop_all();
    dev.complete(&p[0]);
    dev.complete(&p[0]);
    assert_eq!(vq.poll().unwrap().unwrap().tag(), 0);
    assert_sticky(
        &mut vq,
        QueueError::UsedIdNotInFlight {
            id: u32::from(p[0].id),
        },
        &[1],
    );
}
