//! The packed ring against the spec-derived device simulator in `support/packed_device.rs`.

mod support;

use std::collections::VecDeque;

use support::{CountingNotifier, GuestDma, check_used, make_token, packed_device::PackedDevice};
use vireo_virtio::{BufferType, PackedVq, QueueError, Virtq, negotiate, virtio_spec::F};

type Vq = PackedVq<GuestDma, CountingNotifier>;

fn setup(size: u16, features: F) -> (GuestDma, Vq, PackedDevice, CountingNotifier) {
    let dma = GuestDma::new(8 << 20);
    let notifier = CountingNotifier::default();
    let wanted = features | F::RING_PACKED;
    let negotiated = negotiate(wanted | F::VERSION_1, wanted).unwrap();
    let vq = PackedVq::new(2, size, negotiated, dma.clone(), notifier.clone()).unwrap();
    let dev = PackedDevice::new(dma.mem(), vq.ring_addresses(), size);
    (dma, vq, dev, notifier)
}

#[test]
fn round_trip_and_chains() {
    for buffer_type in [BufferType::Direct, BufferType::Indirect] {
        let (dma, mut vq, mut dev, notifier) = setup(8, F::INDIRECT_DESC);
        let baseline = dma.live();
        let token = make_token(&dma, &[3, 100, 7], &[50, 70], 1);
        assert!(vq.dispatch(token, buffer_type).unwrap());
        assert_eq!(notifier.last(), Some((2, None)));
        assert!(vq.poll().unwrap().is_none());
        let popped = dev.pop_all();
        assert_eq!(popped.len(), 1);
        assert_eq!(popped[0].readable.len(), 110);
        dev.complete(&popped[0]);
        let used = vq.poll().unwrap().unwrap();
        assert_eq!(used.tag(), 1);
        assert_eq!(used.written_len(), 110);
        check_used(&used);
        drop(used);
        assert_eq!(dma.live(), baseline);
        assert_eq!(vq.free_descriptors(), 8);
    }
}

#[test]
fn readable_only_buffer_reports_zero_length() {
    let (dma, mut vq, mut dev, _) = setup(4, F::empty());
    vq.dispatch(make_token(&dma, &[8], &[], 0), BufferType::Direct)
        .unwrap();
    let p = dev.pop().unwrap();
    // A used descriptor without VIRTQ_DESC_F_WRITE: its length is ignored (§2.8.7).
    dev.write_used(p.id, 1234, false, p.desc_count);
    assert_eq!(vq.poll().unwrap().unwrap().written_len(), 0);
}

#[test]
fn out_of_order_completion_with_odd_sizes() {
    for size in [3u16, 7, 100] {
        let (dma, mut vq, mut dev, _) = setup(size, F::INDIRECT_DESC);
        let mut next_tag = 0u64;
        for round in 0..200 {
            let mut tags = Vec::new();
            while vq.free_descriptors() >= 3 {
                let bt = if next_tag.is_multiple_of(3) {
                    BufferType::Indirect
                } else {
                    BufferType::Direct
                };
                let token = make_token(&dma, &[1 + (next_tag % 5) as usize, 2], &[9], next_tag);
                vq.dispatch(token, bt).unwrap();
                tags.push(next_tag);
                next_tag += 1;
            }
            let popped = dev.pop_all();
            assert_eq!(popped.len(), tags.len());
            let mut order: Vec<usize> = (0..popped.len()).collect();
            order.rotate_left(round % popped.len().max(1));
            order.reverse();
            for &i in &order {
                dev.complete(&popped[i]);
            }
            for &i in &order {
                let used = vq.poll().unwrap().unwrap();
                assert_eq!(used.tag(), tags[i]);
                check_used(&used);
            }
            assert!(vq.poll().unwrap().is_none());
            assert_eq!(vq.free_descriptors(), size);
        }
    }
}

#[test]
fn wrap_counters_flip_many_times() {
    let (dma, mut vq, mut dev, _) = setup(3, F::INDIRECT_DESC);
    let mut token = Some(make_token(&dma, &[4, 4], &[8], 9));
    for i in 0..30_000u32 {
        let bt = if i % 4 == 0 {
            BufferType::Indirect
        } else {
            BufferType::Direct
        };
        vq.dispatch(token.take().unwrap(), bt).unwrap();
        let p = dev.pop().unwrap();
        dev.complete(&p);
        let used = vq.poll().unwrap().unwrap();
        check_used(&used);
        token = Some(used.into_avail());
    }
}

#[test]
fn event_idx_driver_to_device_with_offset_and_wrap() {
    let (dma, mut vq, mut dev, notifier) = setup(5, F::EVENT_IDX);
    // Notify me when the descriptor at position 0, lap 1 (wrap 1) is made available.
    dev.want_kick_at_next_avail();
    assert!(
        vq.dispatch(make_token(&dma, &[1, 1], &[], 0), BufferType::Direct)
            .unwrap()
    );
    assert!(
        !vq.dispatch(make_token(&dma, &[1], &[], 1), BufferType::Direct)
            .unwrap()
    );
    assert_eq!(notifier.count(), 1);
    // Ask for position 4 of this lap: a batch covering positions 3..=4 and 0 (next lap).
    dev.set_device_event(2, 4, true);
    for p in dev.pop_all() {
        dev.complete(&p);
    }
    while vq.poll().unwrap().is_some() {}
    let mut batch: VecDeque<_> = (2..5).map(|i| make_token(&dma, &[1], &[], i)).collect();
    assert!(vq.dispatch_batch(&mut batch, BufferType::Direct).unwrap());
    assert_eq!(notifier.count(), 2);
    // Position 4 of the previous lap was already passed: no kick for position 1 of this lap.
    assert!(
        !vq.dispatch(make_token(&dma, &[1], &[], 5), BufferType::Direct)
            .unwrap()
    );
    // Position 2 with wrap 0 (this lap) is exactly the next one.
    dev.set_device_event(2, 2, false);
    assert!(
        vq.dispatch(make_token(&dma, &[1], &[], 6), BufferType::Direct)
            .unwrap()
    );
    // Disable / enable.
    dev.set_device_event(1, 0, false);
    for p in dev.pop_all() {
        dev.complete(&p);
    }
    while vq.poll().unwrap().is_some() {}
    assert!(
        !vq.dispatch(make_token(&dma, &[1], &[], 7), BufferType::Direct)
            .unwrap()
    );
    dev.set_device_event(0, 0, false);
    assert!(
        vq.dispatch(make_token(&dma, &[1], &[], 8), BufferType::Direct)
            .unwrap()
    );
}

#[test]
fn event_idx_device_to_driver() {
    let (dma, mut vq, mut dev, _) = setup(7, F::EVENT_IDX);
    for i in 0..3 {
        vq.dispatch(make_token(&dma, &[1], &[1], i), BufferType::Direct)
            .unwrap();
    }
    let popped = dev.pop_all();
    assert!(!vq.enable_notifications());
    dev.complete(&popped[0]);
    assert!(dev.needs_notification(), "event at next_used reached");
    dev.complete(&popped[1]);
    assert!(!dev.needs_notification(), "driver has not consumed yet");
    assert!(vq.poll().unwrap().is_some());
    assert!(vq.poll().unwrap().is_some());
    dev.complete(&popped[2]);
    assert!(dev.needs_notification(), "poll moved the event on");
    vq.disable_notifications();
    assert!(vq.poll().unwrap().is_some());
    for i in 3..5 {
        vq.dispatch(make_token(&dma, &[1], &[1], i), BufferType::Direct)
            .unwrap();
    }
    let popped = dev.pop_all();
    dev.complete(&popped[0]);
    assert!(!dev.needs_notification());
    assert!(
        vq.enable_notifications(),
        "pending used buffers are reported"
    );
}

#[test]
fn flags_suppression_without_event_idx() {
    let (dma, mut vq, mut dev, notifier) = setup(4, F::empty());
    dev.set_device_event(1, 0, false);
    assert!(
        !vq.dispatch(make_token(&dma, &[1], &[1], 0), BufferType::Direct)
            .unwrap()
    );
    assert_eq!(notifier.count(), 0);
    vq.disable_notifications();
    let p = dev.pop().unwrap();
    dev.complete(&p);
    assert!(!dev.needs_notification());
    assert!(vq.enable_notifications());
    assert!(vq.poll().unwrap().is_some());
    vq.dispatch(make_token(&dma, &[1], &[1], 1), BufferType::Direct)
        .unwrap();
    let p = dev.pop().unwrap();
    dev.complete(&p);
    assert!(dev.needs_notification());
}

#[test]
fn notification_data_carries_offset_and_wrap() {
    let (dma, mut vq, mut dev, notifier) = setup(3, F::NOTIFICATION_DATA);
    vq.dispatch(make_token(&dma, &[1, 1], &[], 0), BufferType::Direct)
        .unwrap();
    assert_eq!(notifier.last(), Some((2, Some(2 | 2 << 16 | 1 << 31))));
    let p = dev.pop().unwrap();
    dev.complete(&p);
    vq.poll().unwrap().unwrap();
    vq.dispatch(make_token(&dma, &[1, 1], &[], 1), BufferType::Direct)
        .unwrap();
    // Positions 2 and 0: next_off 1 in the lap with wrap counter 0.
    assert_eq!(notifier.last(), Some((2, Some(2 | 1 << 16))));
}

#[test]
fn in_order_batch_used_descriptor_returns_all_in_order() {
    let (dma, mut vq, mut dev, _) = setup(10, F::IN_ORDER | F::INDIRECT_DESC);
    for i in 0..4 {
        let bt = if i == 1 {
            BufferType::Indirect
        } else {
            BufferType::Direct
        };
        vq.dispatch(make_token(&dma, &[2, 1], &[2], i), bt).unwrap();
    }
    let popped = dev.pop_all();
    dev.complete_in_order_batch(&popped[..3]);
    for i in 0..3 {
        let used = vq.poll().unwrap().unwrap();
        assert_eq!(used.tag(), i);
        assert_eq!(used.written_len(), if i == 2 { 2 } else { 0 });
    }
    assert!(vq.poll().unwrap().is_none());
    dev.complete(&popped[3]);
    assert_eq!(vq.poll().unwrap().unwrap().tag(), 3);
    assert_eq!(vq.free_descriptors(), 10);
}

#[test]
fn full_queue_invalid_tokens_and_reset() {
    let (dma, mut vq, _dev, _) = setup(3, F::INDIRECT_DESC);
    let baseline = dma.live();
    vq.dispatch(make_token(&dma, &[1, 1], &[], 0), BufferType::Direct)
        .unwrap();
    let err = vq
        .dispatch(make_token(&dma, &[1], &[9], 42), BufferType::Direct)
        .unwrap_err();
    assert_eq!(err.error, QueueError::QueueFull);
    assert_eq!(err.token.tag(), 42);
    drop(err);
    let err = vq
        .dispatch(make_token(&dma, &[1; 4], &[], 3), BufferType::Indirect)
        .unwrap_err();
    assert_eq!(err.error, QueueError::ChainTooLong);
    drop(err);
    vq.dispatch(make_token(&dma, &[1, 2], &[3], 1), BufferType::Indirect)
        .unwrap();
    let mut tokens = vq.reset();
    tokens.sort_by_key(|t| t.tag());
    assert_eq!(tokens.iter().map(|t| t.tag()).collect::<Vec<_>>(), [0, 1]);
    drop(tokens);
    assert_eq!(dma.live(), baseline);
    let mut dev = PackedDevice::new(dma.mem(), vq.ring_addresses(), 3);
    vq.dispatch(make_token(&dma, &[4], &[4], 5), BufferType::Direct)
        .unwrap();
    let p = dev.pop().unwrap();
    dev.complete(&p);
    check_used(&vq.poll().unwrap().unwrap());
}
