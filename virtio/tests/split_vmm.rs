//! The split ring against rust-vmm's `virtio-queue` device implementation.

mod support;

use std::collections::VecDeque;

use support::{CountingNotifier, GuestDma, check_used, make_token, vmm_device::VmmDevice};
use vireo_virtio::{
    AvailBufferToken, BufferType, DmaBuffer, QueueError, SplitVq, Virtq, negotiate, virtio_spec::F,
};
use virtio_queue::QueueT;
use vm_memory::{Bytes, GuestAddress};

fn setup(
    size: u16,
    features: F,
) -> (
    GuestDma,
    SplitVq<GuestDma, CountingNotifier>,
    VmmDevice,
    CountingNotifier,
) {
    let dma = GuestDma::new(8 << 20);
    let notifier = CountingNotifier::default();
    let negotiated = negotiate(features | F::VERSION_1, features).unwrap();
    let vq = SplitVq::new(3, size, negotiated, dma.clone(), notifier.clone()).unwrap();
    let dev = VmmDevice::new(
        &dma,
        vq.ring_addresses(),
        size,
        negotiated.contains(F::EVENT_IDX),
    );
    (dma, vq, dev, notifier)
}

#[test]
fn round_trip_direct_single_element() {
    let (dma, mut vq, mut dev, notifier) = setup(8, F::empty());
    let token = make_token(&dma, &[5], &[16], 7);
    assert!(vq.dispatch(token, BufferType::Direct).unwrap());
    assert_eq!(notifier.last(), Some((3, None)));
    assert!(vq.poll().unwrap().is_none());
    let popped = dev.pop_all();
    assert_eq!(popped.len(), 1);
    dev.complete(&popped[0]);
    let used = vq.poll().unwrap().unwrap();
    assert_eq!(used.tag(), 7);
    assert_eq!(used.written_len(), 5);
    check_used(&used);
    assert!(vq.poll().unwrap().is_none());
    assert_eq!(vq.free_descriptors(), 8);
}

#[test]
fn chains_direct_and_indirect() {
    for buffer_type in [BufferType::Direct, BufferType::Indirect] {
        let (dma, mut vq, mut dev, _) = setup(8, F::INDIRECT_DESC);
        let baseline = dma.live();
        let token = make_token(&dma, &[3, 100, 7], &[50, 70], 1);
        vq.dispatch(token, buffer_type).unwrap();
        let expected_free = if buffer_type == BufferType::Direct {
            3
        } else {
            7
        };
        assert_eq!(vq.free_descriptors(), expected_free);
        let popped = dev.pop_all();
        assert_eq!(popped[0].readable.len(), 110);
        assert_eq!(popped[0].writable.len(), 2);
        dev.complete(&popped[0]);
        let used = vq.poll().unwrap().unwrap();
        assert_eq!(used.written_len(), 110);
        check_used(&used);
        assert_eq!(used.readable().len(), 3);
        assert_eq!(used.writable().len(), 2);
        drop(used);
        assert_eq!(dma.live(), baseline, "indirect table and buffers freed");
    }
}

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
    let (dma, mut vq, mut dev, _) = setup(4, F::INDIRECT_DESC);
    let mut token = Some(make_token(&dma, &[4], &[4], 9));
    for i in 0..70_000u32 {
        let bt = if i % 3 == 0 {
            BufferType::Indirect
        } else {
            BufferType::Direct
        };
        vq.dispatch(token.take().unwrap(), bt).unwrap();
        let popped = dev.pop_all();
        dev.complete(&popped[0]);
        let used = vq.poll().unwrap().unwrap();
        assert_eq!(used.written_len(), 4);
        token = Some(used.into_avail());
    }
    assert_eq!(dev.queue.next_avail(), (70_000u32 % 65536) as u16);
}

#[test]
fn event_idx_driver_to_device() {
    let (dma, mut vq, mut dev, notifier) = setup(8, F::EVENT_IDX);
    // The device asks to be notified at the next avail index (avail_event = 0).
    assert!(!dev.queue.enable_notification(&dev.mem.clone()).unwrap());
    assert!(
        vq.dispatch(make_token(&dma, &[1], &[], 0), BufferType::Direct)
            .unwrap()
    );
    // avail_event still 0: the device has not caught up, so no new notification.
    assert!(
        !vq.dispatch(make_token(&dma, &[1], &[], 1), BufferType::Direct)
            .unwrap()
    );
    assert_eq!(notifier.count(), 1);
    let popped = dev.pop_all();
    let mem = dev.mem.clone();
    dev.queue.enable_notification(&mem).unwrap();
    for p in &popped {
        dev.complete(p);
    }
    // A batch of three is notified once.
    let mut batch: VecDeque<_> = (2..5).map(|i| make_token(&dma, &[1], &[], i)).collect();
    assert!(vq.dispatch_batch(&mut batch, BufferType::Direct).unwrap());
    assert_eq!(notifier.count(), 2);
    // The device suppresses notifications entirely.
    dev.queue.disable_notification(&mem).unwrap();
    dev.pop_all();
    assert!(
        !vq.dispatch(make_token(&dma, &[1], &[], 5), BufferType::Direct)
            .unwrap()
    );
    assert_eq!(notifier.count(), 2);
}

#[test]
fn event_idx_device_to_driver() {
    let (dma, mut vq, mut dev, _) = setup(8, F::EVENT_IDX);
    for i in 0..4 {
        vq.dispatch(make_token(&dma, &[1], &[1], i), BufferType::Direct)
            .unwrap();
    }
    let popped = dev.pop_all();
    assert!(!vq.enable_notifications());
    dev.complete(&popped[0]);
    assert!(dev.needs_notification(), "used_event = 0 reached");
    dev.complete(&popped[1]);
    assert!(!dev.needs_notification(), "driver has not consumed yet");
    assert!(vq.poll().unwrap().is_some());
    assert!(vq.poll().unwrap().is_some());
    dev.complete(&popped[2]);
    assert!(dev.needs_notification(), "poll moved used_event on");
    vq.disable_notifications();
    dev.complete(&popped[3]);
    assert!(!dev.needs_notification());
    assert!(
        vq.enable_notifications(),
        "pending used buffers are reported"
    );
}

#[test]
fn flags_suppression_without_event_idx() {
    let (dma, mut vq, mut dev, notifier) = setup(8, F::empty());
    let mem = dev.mem.clone();
    dev.queue.disable_notification(&mem).unwrap();
    assert!(
        !vq.dispatch(make_token(&dma, &[1], &[1], 0), BufferType::Direct)
            .unwrap()
    );
    assert_eq!(notifier.count(), 0);
    let popped = dev.pop_all();
    // virtio-queue ignores VIRTQ_AVAIL_F_NO_INTERRUPT, so read the flag as a device would.
    let avail_flags = GuestAddress(vq.ring_addresses().driver_area);
    vq.disable_notifications();
    assert_eq!(mem.read_obj::<u16>(avail_flags).unwrap(), 1);
    dev.complete(&popped[0]);
    assert!(vq.enable_notifications());
    assert_eq!(mem.read_obj::<u16>(avail_flags).unwrap(), 0);
    assert!(vq.poll().unwrap().is_some());
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
fn in_order_batch_used_entry_returns_all_in_order() {
    let (dma, mut vq, mut dev, _) = setup(16, F::IN_ORDER);
    for i in 0..5 {
        vq.dispatch(make_token(&dma, &[2], &[2], i), BufferType::Direct)
            .unwrap();
    }
    let popped = dev.pop_all();
    // In-order descriptors are used in table order (§2.7.9).
    let heads: Vec<u16> = popped.iter().map(|p| p.head).collect();
    assert_eq!(heads, [0, 2, 4, 6, 8]);
    // One used entry for the first three buffers, naming the last of them.
    dev.complete(&popped[2]);
    for i in 0..3 {
        let used = vq.poll().unwrap().unwrap();
        assert_eq!(used.tag(), i);
        assert_eq!(used.written_len(), if i == 2 { 2 } else { 0 });
    }
    assert!(vq.poll().unwrap().is_none());
    dev.complete(&popped[3]);
    dev.complete(&popped[4]);
    assert_eq!(vq.poll().unwrap().unwrap().tag(), 3);
    assert_eq!(vq.poll().unwrap().unwrap().tag(), 4);
    assert_eq!(vq.free_descriptors(), 16);
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
fn reset_returns_in_flight_tokens_and_ring_works_again() {
    let (dma, mut vq, _dev, _) = setup(8, F::INDIRECT_DESC);
    let baseline = dma.live();
    vq.dispatch(make_token(&dma, &[1], &[], 0), BufferType::Direct)
        .unwrap();
    vq.dispatch(make_token(&dma, &[1, 2], &[3], 1), BufferType::Indirect)
        .unwrap();
    let mut tokens = vq.reset();
    tokens.sort_by_key(|t| t.tag());
    assert_eq!(tokens.iter().map(|t| t.tag()).collect::<Vec<_>>(), [0, 1]);
    drop(tokens);
    assert_eq!(dma.live(), baseline);
    assert_eq!(vq.free_descriptors(), 8);
    let mut dev = VmmDevice::new(&dma, vq.ring_addresses(), 8, false);
    vq.dispatch(make_token(&dma, &[4], &[4], 5), BufferType::Direct)
        .unwrap();
    let popped = dev.pop_all();
    dev.complete(&popped[0]);
    check_used(&vq.poll().unwrap().unwrap());
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
