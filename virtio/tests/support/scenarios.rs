//! Behaviours both ring layouts must have, written once over [`Layout`]; `shared_tests!`
//! instantiates them as tests for one layout.

use std::collections::VecDeque;

use vireo_virtio::{BufferType, DmaBuffer, QueueError, Virtq, virtio_spec::F};

use super::{
    check_used,
    layout::{Layout, SimDevice},
    make_token,
};

/// What a queue's `Debug` output (the ring state logs print when a device stalls) says: its
/// index, size, negotiated ring features, free descriptors, buffers in flight, whether
/// used-buffer notifications are on, where the driver's next buffer goes, and the device
/// addresses of its three areas (in hex, as QEMU's `info virtio-queue-status` shows them).
pub fn debug_output_tells_the_ring_state<L: Layout>() {
    let (dma, mut vq, _dev, _) = L::setup(8, F::EVENT_IDX);
    for tag in 0..3 {
        vq.dispatch(make_token(&dma, &[4], &[4], tag), BufferType::Direct)
            .unwrap();
    }
    vq.disable_notifications();
    let text = format!("{vq:?}");
    let (position, counts_descriptors) = L::AVAIL_POSITION;
    // Three buffers of two descriptors each.
    let avail = if counts_descriptors { 6 } else { 3 };
    let areas = vq.ring_addresses();
    for field in [
        format!("index: {}", L::QUEUE),
        "size: 8".to_string(),
        "event_idx: true".to_string(),
        "num_free: 2".to_string(),
        "in_flight: 3".to_string(),
        "notifications_enabled: false".to_string(),
        format!("{position}: {avail}"),
        format!("phys: {:#x}", areas.descriptor_area),
        format!("phys: {:#x}", areas.driver_area),
        format!("phys: {:#x}", areas.device_area),
    ] {
        assert!(text.contains(&field), "`{field}` missing from {text}");
    }
    // The one-line form a stall report prints.
    let line = vq.ring_state().to_string();
    let avail = if counts_descriptors {
        "next_avail=6/1"
    } else {
        "avail.idx=3"
    };
    for field in [avail, "in_flight=3"] {
        assert!(line.contains(field), "`{field}` missing from {line}");
    }
}

/// Round trips, direct and indirect, single element and chains: what the device reads, what
/// the driver gets back, and that descriptors and memory all return.
pub fn round_trip_and_chains<L: Layout>() {
    // (features, buffer type, readable, writable, tag, written, free while in flight)
    let single: &[_] = &[(F::empty(), BufferType::Direct, &[5][..], &[16][..], 7, 5, 6)];
    let chains = [BufferType::Direct, BufferType::Indirect].map(|bt| {
        let free = if bt == BufferType::Direct { 3 } else { 7 };
        (
            F::INDIRECT_DESC,
            bt,
            &[3, 100, 7][..],
            &[50, 70][..],
            1,
            110,
            free,
        )
    });
    for &(features, bt, readable, writable, tag, written, free) in single.iter().chain(&chains) {
        let (dma, mut vq, mut dev, notifier) = L::setup(8, features);
        // The transport notifies the device with this index.
        assert_eq!(vq.index(), L::QUEUE);
        let baseline = dma.live();
        assert!(
            vq.dispatch(make_token(&dma, readable, writable, tag), bt)
                .unwrap()
        );
        assert_eq!(notifier.last(), Some((L::QUEUE, None)));
        assert_eq!(vq.free_descriptors(), free);
        assert!(vq.poll().unwrap().is_none());
        let popped = dev.pop_all();
        assert_eq!(popped.len(), 1);
        assert_eq!(
            L::Dev::readable(&popped[0]).len(),
            readable.iter().sum::<usize>()
        );
        assert_eq!(L::Dev::writable_count(&popped[0]), writable.len());
        dev.complete(&popped[0]);
        let used = vq.poll().unwrap().unwrap();
        assert_eq!(used.tag(), tag);
        assert_eq!(used.written_len(), written);
        check_used(&used);
        assert_eq!(used.readable().len(), readable.len());
        assert_eq!(used.writable().len(), writable.len());
        drop(used);
        assert!(vq.poll().unwrap().is_none());
        assert_eq!(dma.live(), baseline, "indirect table and buffers freed");
        assert_eq!(vq.free_descriptors(), 8);
    }
}

/// One buffer at a time, `rounds` times, on a ring of `size` (indices and wrap counters turn
/// over many times), every `indirect_every`-th indirect. Returns the device for layout checks.
pub fn many_round_trips<L: Layout>(
    size: u16,
    rounds: u32,
    indirect_every: u32,
    (readable, writable, written): (&[usize], &[usize], u32),
) -> L::Dev {
    let (dma, mut vq, mut dev, _) = L::setup(size, F::INDIRECT_DESC);
    let mut token = Some(make_token(&dma, readable, writable, 9));
    for i in 0..rounds {
        let bt = if i % indirect_every == 0 {
            BufferType::Indirect
        } else {
            BufferType::Direct
        };
        vq.dispatch(token.take().unwrap(), bt).unwrap();
        let popped = dev.pop_all();
        assert_eq!(popped.len(), 1);
        dev.complete(&popped[0]);
        let used = vq.poll().unwrap().unwrap();
        assert_eq!(used.written_len(), written);
        check_used(&used);
        token = Some(used.into_avail());
    }
    dev
}

/// `VIRTIO_F_EVENT_IDX`, driver to device: the device asks for a kick at its next available
/// buffer; the driver kicks once for a batch and not at all once the device suppresses kicks.
pub fn event_idx_driver_to_device<L: Layout>() {
    let (dma, mut vq, mut dev, notifier) = L::setup(8, F::EVENT_IDX);
    // The device asks to be notified at the next available buffer.
    assert!(!dev.enable_kicks(true));
    let dispatch = |vq: &mut L::Vq, tag| {
        vq.dispatch(make_token(&dma, &[1], &[], tag), BufferType::Direct)
            .unwrap()
    };
    assert!(dispatch(&mut vq, 0));
    // The device has not caught up, so no new notification.
    assert!(!dispatch(&mut vq, 1));
    assert_eq!(notifier.count(), 1);
    let popped = dev.pop_all();
    dev.enable_kicks(true);
    for p in &popped {
        dev.complete(p);
    }
    // A batch of three is notified once.
    let mut batch: VecDeque<_> = (2..5).map(|i| make_token(&dma, &[1], &[], i)).collect();
    assert!(vq.dispatch_batch(&mut batch, BufferType::Direct).unwrap());
    assert_eq!(notifier.count(), 2);
    // The device suppresses notifications entirely.
    dev.disable_kicks();
    dev.pop_all();
    assert!(!dispatch(&mut vq, 5));
    assert_eq!(notifier.count(), 2);
}

/// `VIRTIO_F_EVENT_IDX`, device to driver: the driver's used event moves as it consumes, and
/// enabling notifications reports buffers already used.
pub fn event_idx_device_to_driver<L: Layout>() {
    for size in L::sizes(&[7, 8]) {
        let (dma, mut vq, mut dev, _) = L::setup(size, F::EVENT_IDX);
        let dispatch = |vq: &mut L::Vq, tags: std::ops::Range<u64>| {
            for i in tags {
                vq.dispatch(make_token(&dma, &[1], &[1], i), BufferType::Direct)
                    .unwrap();
            }
        };
        dispatch(&mut vq, 0..3);
        let popped = dev.pop_all();
        assert!(!vq.enable_notifications());
        dev.complete(&popped[0]);
        assert!(dev.needs_notification(), "event at next used reached");
        dev.complete(&popped[1]);
        assert!(!dev.needs_notification(), "driver has not consumed yet");
        assert!(vq.poll().unwrap().is_some());
        assert!(vq.poll().unwrap().is_some());
        dev.complete(&popped[2]);
        assert!(dev.needs_notification(), "poll moved the event on");
        // Disabled: a buffer used now is not notified, but reported when enabled again. The
        // second time, buffers are consumed while disabled, which does not move the event
        // either (packed size 7: across the wrap).
        for (polls, tags) in [(0, 3..4), (2, 4..6)] {
            vq.disable_notifications();
            for _ in 0..polls {
                assert!(vq.poll().unwrap().is_some());
            }
            dispatch(&mut vq, tags);
            let popped = dev.pop_all();
            dev.complete(&popped[0]);
            assert!(!dev.needs_notification());
            assert!(
                vq.enable_notifications(),
                "pending used buffers are reported"
            );
        }
        // Disabled with every used buffer consumed: the next one used raises no notification
        // either (the event is moved out of reach, not left at the next used index).
        while vq.poll().unwrap().is_some() {}
        vq.disable_notifications();
        dispatch(&mut vq, 6..7);
        let popped = dev.pop_all();
        dev.complete(&popped[0]);
        assert!(!dev.needs_notification(), "disabled after consuming all");
        assert!(vq.enable_notifications());
    }
}

/// Without `VIRTIO_F_EVENT_IDX`: the device's and the driver's flags suppress notifications.
pub fn flags_suppression_without_event_idx<L: Layout>() {
    for size in L::sizes(&[4, 8]) {
        let (dma, mut vq, mut dev, notifier) = L::setup(size, F::empty());
        dev.disable_kicks();
        let token = |tag| make_token(&dma, &[1], &[1], tag);
        assert!(!vq.dispatch(token(0), BufferType::Direct).unwrap());
        assert_eq!(notifier.count(), 0);
        let popped = dev.pop_all();
        vq.disable_notifications();
        assert_eq!(L::driver_flags(&dma, &vq), 1);
        dev.complete(&popped[0]);
        if L::DEVICE_HONOURS_DRIVER_FLAGS {
            assert!(!dev.needs_notification());
        }
        assert!(vq.enable_notifications());
        assert_eq!(L::driver_flags(&dma, &vq), 0);
        assert!(vq.poll().unwrap().is_some());
        vq.dispatch(token(1), BufferType::Direct).unwrap();
        let popped = dev.pop_all();
        dev.complete(&popped[0]);
        assert!(dev.needs_notification());
    }
}

/// A token with an empty element is refused (§2.7.5, §2.8.13: a descriptor's length is not
/// zero) before anything is written: it comes back intact, the queue keeps every descriptor,
/// and dropping it returns all its memory (its empty element never had any).
pub fn token_with_an_empty_element_comes_back_intact<L: Layout>() {
    let (dma, mut vq, _dev, notifier) = L::setup(8, F::INDIRECT_DESC);
    let baseline = dma.live();
    for (readable, writable, bt) in [
        (&[0][..], &[4][..], BufferType::Direct),
        (&[4, 0][..], &[][..], BufferType::Direct),
        (&[4][..], &[2, 0][..], BufferType::Indirect),
    ] {
        let err = vq
            .dispatch(make_token(&dma, readable, writable, 9), bt)
            .unwrap_err();
        assert_eq!(err.error, QueueError::EmptyElement);
        assert_eq!(err.token.tag(), 9);
        let lens = |b: &[DmaBuffer<_>]| b.iter().map(|b| b.len()).collect::<Vec<_>>();
        assert_eq!(lens(err.token.readable()), readable);
        assert_eq!(lens(err.token.writable()), writable);
        assert_eq!(vq.free_descriptors(), 8);
        assert_eq!(vq.in_flight(), 0);
        drop(err);
        assert_eq!(dma.live(), baseline);
    }
    assert_eq!(notifier.count(), 0);
}

/// A token edited in place before dispatch (`readable_mut`, `writable_mut`, as a driver does
/// when it reuses one) is described by its new contents, order and lengths: the device reads
/// the new bytes, and the used token gives back what it wrote, element by element.
pub fn token_edited_in_place_is_what_the_device_sees<L: Layout>() {
    let (dma, mut vq, mut dev, _) = L::setup(8, F::empty());
    let mut token = make_token(&dma, &[4], &[16, 16], 3);
    token.readable_mut()[0].copy_from_slice(b"edit");
    assert!(token.writable_mut()[0].set_len(6));
    token.writable_mut().swap(0, 1);
    assert_eq!(
        token.writable().iter().map(|b| b.len()).collect::<Vec<_>>(),
        [16, 6]
    );
    vq.dispatch(token, BufferType::Direct).unwrap();
    let popped = dev.pop_all();
    assert_eq!(<L::Dev as SimDevice>::readable(&popped[0]), b"edit");
    assert_eq!(<L::Dev as SimDevice>::writable_count(&popped[0]), 2);
    dev.complete(&popped[0]);
    let used = vq.poll().unwrap().unwrap();
    // The service writes back the 4 readable bytes: all in the first writable element, and
    // no empty piece for the second.
    let written = used.written_len();
    assert_eq!(written, 4);
    check_used(&used);
    let pieces: Vec<usize> = used.written().map(<[u8]>::len).collect();
    assert_eq!(pieces, [4]);
    let debug = format!("{used:?}");
    for field in [format!("written_len: {written}"), "tag: 3".to_string()] {
        assert!(debug.contains(&field), "`{field}` missing from {debug}");
    }
}

/// `VIRTIO_F_IN_ORDER`: one used entry for a run of buffers returns them all, in order, with
/// the written length on the last only.
pub fn in_order_batch_returns_all_in_order<L: Layout>() {
    for size in L::sizes(&[10, 16]) {
        let (dma, mut vq, mut dev, _) = L::setup(size, F::IN_ORDER | F::INDIRECT_DESC);
        // Ten descriptors in all: chains of three and two, one indirect.
        for i in 0..5 {
            let (bt, readable) = match i {
                0 => (BufferType::Direct, &[2, 1][..]),
                1 => (BufferType::Indirect, &[2, 1][..]),
                _ => (BufferType::Direct, &[2][..]),
            };
            vq.dispatch(make_token(&dma, readable, &[2], i), bt)
                .unwrap();
        }
        let popped = dev.pop_all();
        assert_eq!(popped.len(), 5);
        dev.complete_in_order_batch(&popped[..3]);
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
        assert_eq!(vq.free_descriptors(), size);
    }
}

/// A reset returns the tokens in flight with their memory, and the ring works again with a
/// fresh device.
pub fn reset_returns_in_flight_tokens_and_ring_works_again<L: Layout>() {
    // Packed size 3: the two tokens fill the ring.
    for size in L::sizes(&[3, 8]) {
        let (dma, mut vq, _dev, _) = L::setup(size, F::INDIRECT_DESC);
        let baseline = dma.live();
        vq.dispatch(make_token(&dma, &[1, 1], &[], 0), BufferType::Direct)
            .unwrap();
        vq.dispatch(make_token(&dma, &[1, 2], &[3], 1), BufferType::Indirect)
            .unwrap();
        let mut tokens = vq.reset();
        tokens.sort_by_key(|t| t.tag());
        assert_eq!(tokens.iter().map(|t| t.tag()).collect::<Vec<_>>(), [0, 1]);
        drop(tokens);
        assert_eq!(dma.live(), baseline);
        assert_eq!(vq.free_descriptors(), size);
        let mut dev = L::device(&dma, &vq, false);
        vq.dispatch(make_token(&dma, &[4], &[4], 5), BufferType::Direct)
            .unwrap();
        let popped = dev.pop_all();
        dev.complete(&popped[0]);
        check_used(&vq.poll().unwrap().unwrap());
    }
}

/// The shared scenarios as tests for `$layout`, in a module `shared`.
#[allow(unused_macros, reason = "only the layout test binaries use it")]
macro_rules! shared_tests {
    ($layout:ty) => {
        $crate::support::scenarios::shared_tests!(
            @each $layout:
            round_trip_and_chains,
            debug_output_tells_the_ring_state,
            event_idx_driver_to_device,
            event_idx_device_to_driver,
            flags_suppression_without_event_idx,
            token_with_an_empty_element_comes_back_intact,
            token_edited_in_place_is_what_the_device_sees,
            in_order_batch_returns_all_in_order,
            reset_returns_in_flight_tokens_and_ring_works_again,
        );
    };
    (@each $layout:ty: $($scenario:ident),* $(,)?) => {
        mod shared {
            $(
                #[test]
                fn $scenario() {
                    $crate::support::scenarios::$scenario::<$layout>();
                }
            )*
        }
    };
}

#[allow(unused_imports, reason = "only the layout test binaries use it")]
pub(crate) use shared_tests;
