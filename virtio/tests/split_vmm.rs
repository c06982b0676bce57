//! The split ring against rust-vmm's `virtio-queue` device implementation: the scenarios both
//! layouts share (`support/scenarios.rs`) and the split layout's own.

mod support;

use std::collections::VecDeque;

use support::{
    CountingNotifier, GuestDma, SimDevice as _, check_used,
    layout::{Layout, Split},
    make_token,
    scenarios::many_round_trips,
    vmm_device::VmmDevice,
};
use vireo_virtio::{
    AvailBufferToken, BufferType, DmaBuffer, QueueError, SplitVq, Virtq, virtio_spec::F,
};
use virtio_queue::QueueT;
use vm_memory::{Bytes, GuestAddress};

support::scenarios::shared_tests!(crate::support::layout::Split);

fn setup(size: u16, features: F) -> (GuestDma, Vq, VmmDevice, CountingNotifier) {
    Split::setup(size, features)
}

type Vq = SplitVq<GuestDma, CountingNotifier>;

#[test]
fn out_of_order_completion_returns_exact_tokens() {
    let (dma, mut vq, mut dev, _) = setup(16, F::INDIRECT_DESC);
    for i in 0..8u64 {
        let bt = if i % 2 == 0 {
            BufferType::Direct
        } else {
            BufferType::Indirect
        };
        vq.dispatch(make_token(&dma, &[1 + i as usize], &[8], i), bt)
            .unwrap();
    }
    let popped = dev.pop_all();
    assert_eq!(popped.len(), 8);
    let order = [5usize, 2, 7, 0, 1, 6, 3, 4];
    for &i in &order {
        dev.complete(&popped[i]);
    }
    for &i in &order {
        let used = vq.poll().unwrap().unwrap();
        assert_eq!(used.tag(), i as u64);
        assert_eq!(used.written_len() as usize, 1 + i);
        check_used(&used);
    }
    assert_eq!(vq.in_flight(), 0);
    assert_eq!(vq.free_descriptors(), 16);
}

#[test]
#[cfg_attr(miri, ignore = "70000 round trips are too slow under Miri")]
fn indices_wrap_past_u16() {
    let dev = many_round_trips::<Split>(4, 70_000, 3, (&[4], &[4], 4));
    assert_eq!(dev.queue.next_avail(), (70_000u32 % 65536) as u16);
}

#[test]
fn notification_data_carries_avail_idx() {
    let (dma, mut vq, _dev, notifier) = setup(8, F::NOTIFICATION_DATA);
    vq.dispatch(make_token(&dma, &[1], &[], 0), BufferType::Direct)
        .unwrap();
    assert_eq!(notifier.last(), Some((3, Some(3 | 1 << 16))));
    let mut batch: VecDeque<_> = (1..4).map(|i| make_token(&dma, &[1], &[], i)).collect();
    vq.dispatch_batch(&mut batch, BufferType::Direct).unwrap();
    assert_eq!(notifier.last(), Some((3, Some(3 | 4 << 16))));
}

#[test]
fn in_order_descriptors_are_used_in_table_order() {
    let (dma, mut vq, mut dev, _) = setup(16, F::IN_ORDER);
    for i in 0..5 {
        vq.dispatch(make_token(&dma, &[2], &[2], i), BufferType::Direct)
            .unwrap();
    }
    let popped = dev.pop_all();
    // In-order descriptors are used in table order (§2.7.9).
    let heads: Vec<u16> = popped.iter().map(|p| p.head).collect();
    assert_eq!(heads, [0, 2, 4, 6, 8]);
}

/// A `struct virtq_desc` as the device reads it: address, length, flags, next.
fn read_desc(dma: &GuestDma, table: u64, i: u64) -> (u64, u32, u16, u16) {
    let at = |off| GuestAddress(table + 16 * i + off);
    let mem = dma.mem();
    (
        mem.read_obj(at(0)).unwrap(),
        mem.read_obj(at(8)).unwrap(),
        mem.read_obj(at(12)).unwrap(),
        mem.read_obj(at(14)).unwrap(),
    )
}

/// §2.7.5.3: the ring descriptor of an indirect buffer has INDIRECT (not NEXT) and the table's
/// length; the table's entries are chained like a direct chain, NEXT and `next` to the
/// following entry on all but the last, WRITE on the device-writable ones, each with its
/// element's address and length.
#[test]
fn indirect_table_is_chained_like_a_direct_chain() {
    const NEXT: u16 = 1;
    const WRITE: u16 = 2;
    const INDIRECT: u16 = 4;
    let (dma, mut vq, _dev, _) = setup(8, F::INDIRECT_DESC);
    let token = make_token(&dma, &[3, 5], &[7, 9], 1);
    let lens: Vec<u32> = token
        .readable()
        .iter()
        .chain(token.writable())
        .map(|b| b.len() as u32)
        .collect();
    vq.dispatch(token, BufferType::Indirect).unwrap();
    let ring = vq.ring_addresses().descriptor_area;
    let (table, table_len, flags, _) = read_desc(&dma, ring, 0);
    assert_eq!((table_len, flags), (4 * 16, INDIRECT));
    let mut seen = Vec::new();
    for i in 0..4u16 {
        let (addr, len, flags, next) = read_desc(&dma, table, i.into());
        let last = i == 3;
        let want = if i >= 2 { WRITE } else { 0 } | if last { 0 } else { NEXT };
        assert_eq!(flags, want, "entry {i}");
        if !last {
            assert_eq!(next, i + 1, "entry {i}");
        }
        assert_eq!(len, lens[usize::from(i)], "entry {i}");
        seen.push(addr);
    }
    seen.dedup();
    assert_eq!(seen.len(), 4, "four distinct element addresses");
}

#[test]
fn full_queue_and_invalid_tokens_come_back_intact() {
    let (dma, mut vq, _dev, _) = setup(4, F::empty());
    vq.dispatch(make_token(&dma, &[1, 1, 1], &[], 0), BufferType::Direct)
        .unwrap();
    let err = vq
        .dispatch(make_token(&dma, &[1], &[9, 9], 42), BufferType::Direct)
        .unwrap_err();
    assert_eq!(err.error, QueueError::QueueFull);
    assert_eq!(err.token.tag(), 42);
    assert_eq!(err.token.writable().len(), 2);
    let err = vq
        .dispatch(make_token(&dma, &[1], &[], 1), BufferType::Indirect)
        .unwrap_err();
    assert_eq!(err.error, QueueError::IndirectNotNegotiated);
    let err = vq
        .dispatch(make_token(&dma, &[], &[], 2), BufferType::Direct)
        .unwrap_err();
    assert_eq!(err.error, QueueError::EmptyToken);
    let err = vq
        .dispatch(make_token(&dma, &[1; 5], &[], 3), BufferType::Direct)
        .unwrap_err();
    assert_eq!(err.error, QueueError::ChainTooLong);
    let mut batch: VecDeque<_> = (10..13).map(|i| make_token(&dma, &[1], &[], i)).collect();
    assert_eq!(
        vq.dispatch_batch(&mut batch, BufferType::Direct),
        Err(QueueError::QueueFull)
    );
    assert_eq!(
        batch.len(),
        2,
        "the token that did not fit and the rest stay"
    );
    assert_eq!(batch[0].tag(), 11);
}

#[test]
fn shortened_buffer_is_described_by_its_length_and_freed_whole() {
    let (dma, mut vq, mut dev, _) = setup(8, F::empty());
    let live = dma.live();
    let mut buffer = DmaBuffer::from_slice_in(&[1, 2, 3, 4, 5, 6], dma.clone()).unwrap();
    assert!(!buffer.set_len(7));
    assert!(buffer.set_len(3));
    assert_eq!((&buffer[..], buffer.capacity()), (&[1, 2, 3][..], 6));
    let token = AvailBufferToken::new(vec![buffer], Vec::new());
    vq.dispatch(token, BufferType::Direct).unwrap();
    let popped = dev.pop_all();
    assert_eq!(popped[0].readable, [1, 2, 3]);
    dev.complete(&popped[0]);
    let (mut readable, _) = vq.poll().unwrap().unwrap().into_avail().into_parts();
    assert!(readable[0].set_len(6));
    assert_eq!(&readable[0][..], &[1, 2, 3, 4, 5, 6]);
    drop(readable);
    assert_eq!(dma.live(), live);
}
