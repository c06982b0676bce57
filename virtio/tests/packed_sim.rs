//! The packed ring against the spec-derived device simulator in `support/packed_device.rs`: the
//! scenarios both layouts share (`support/scenarios.rs`) and the packed layout's own.

mod support;

use std::collections::VecDeque;

use support::{
    CountingNotifier, GuestDma, SimDevice as _, check_used,
    layout::{Layout, Packed},
    make_token,
    packed_device::PackedDevice,
    scenarios::many_round_trips,
};
use vireo_virtio::{BufferType, PackedVq, QueueError, Virtq, virtio_spec::F};

support::scenarios::shared_tests!(crate::support::layout::Packed);

fn setup(size: u16, features: F) -> (GuestDma, Vq, PackedDevice, CountingNotifier) {
    Packed::setup(size, features)
}

type Vq = PackedVq<GuestDma, CountingNotifier>;

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
        for round in 0..if cfg!(miri) { 4 } else { 200 } {
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
    let rounds = if cfg!(miri) { 300 } else { 30_000 };
    many_round_trips::<Packed>(3, rounds, 4, (&[4, 4], &[8], 8));
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

/// `RING_EVENT_FLAGS_DESC` is only valid with `VIRTIO_F_EVENT_IDX` (§2.8.10), and 0x3 is
/// reserved. A device that writes either otherwise gets a notification for every buffer, not
/// one at the event it names: a notification too many costs a little time, one too few stalls
/// the queue.
#[test]
fn invalid_event_flags_mean_notify_every_time() {
    let (dma, mut vq, mut dev, notifier) = setup(5, F::empty());
    let mut tag = 0;
    for (flags, off) in [(2, 4), (2, 3), (3, 4)] {
        // An event further ahead than the next buffers, in this lap (wrap counter 1).
        dev.set_device_event(flags, off, true);
        for _ in 0..2 {
            let before = notifier.count();
            assert!(
                vq.dispatch(make_token(&dma, &[1], &[], tag), BufferType::Direct)
                    .unwrap(),
                "flags {flags:#x}, buffer {tag}"
            );
            assert_eq!(notifier.count(), before + 1);
            tag += 1;
        }
        for p in dev.pop_all() {
            dev.complete(&p);
        }
        while vq.poll().unwrap().is_some() {}
    }
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
fn full_queue_and_invalid_tokens() {
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
    // Nothing was taken: the refused tokens and their memory came back whole.
    assert_eq!(vq.reset().len(), 1);
    assert_eq!(dma.live(), baseline);
}
