//! Bad kernel command-line options are reported with the option, the value, what is accepted and
//! what is used instead; the disk still comes up with a queue size its requests fit in.
//!
//! vireo-test: append vireo.blk.queue_size=3 vireo.blk.packed=maybe log=bogus vireo.bogus=1
//! vireo-test: append vireo.blk.queues=99 vireo.net.queue_size=3000 app.own=1
//! vireo-test: qemu -device virtio-blk-pci,drive=d0,disable-legacy=on,packed=off,serial=d0
//! vireo-test: qemu -drive if=none,id=d0,format=raw,file={disk:d0:1M}

#![no_std]
#![no_main]

extern crate alloc;

use vireo::cmdline::{self, Problem};

vireo::test_main!(
    every_bad_word_is_reported_at_boot,
    the_disk_comes_up_with_a_usable_queue,
    values_are_read_by_one_rule,
    queue_sizes_follow_the_ring_layout
);

fn find<'a>(problems: &'a [Problem], word: &str) -> &'a str {
    problems
        .iter()
        .find(|p| p.word == word)
        .map(|p| p.message.as_str())
        .unwrap_or_else(|| panic!("`{word}` was not reported: {problems:?}"))
}

fn every_bad_word_is_reported_at_boot() {
    let p = cmdline::problems();
    let expected: [(&str, &[&str]); 6] = [
        (
            "vireo.blk.queue_size=3",
            &["power of two", "3 descriptors", "using 4"],
        ),
        (
            "vireo.blk.packed=maybe",
            &["not a boolean", "using the default (on)"],
        ),
        (
            "log=bogus",
            &["not a log level", "using the default (info)"],
        ),
        (
            "vireo.bogus=1",
            &["unknown Vireo option", "vireo.blk.queue_size"],
        ),
        ("vireo.blk.queues=99", &["1 to 64", "using 64"]),
        ("vireo.net.queue_size=3000", &["using 4096"]),
    ];
    for (word, needles) in expected {
        let m = find(p, word);
        for needle in needles {
            assert!(m.contains(needle), "{word}: {m}");
        }
    }
    // An application's own option is not Vireo's business.
    assert!(p.iter().all(|p| !p.word.starts_with("app.")), "{p:?}");
    assert_eq!(p.len(), 6, "{p:?}");
    for problem in p {
        vireo::println!("{problem}");
    }
}

fn the_disk_comes_up_with_a_usable_queue() {
    assert!(
        vireo::virtio::failed_devices().is_empty(),
        "{:?}",
        vireo::virtio::failed_devices()
    );
    let disk = vireo::block::by_serial("d0").expect("the disk came up");
    let mut block = alloc::vec![0u8; disk.info().block_size as usize];
    disk.read(0, &mut block).expect("a read fits in the queue");
    assert_eq!(cmdline::number("vireo.blk.queue_size"), Some(4));
    assert_eq!(cmdline::number("vireo.blk.queues"), Some(64));
    assert!(cmdline::flag("vireo.blk.packed", true));
}

fn values_are_read_by_one_rule() {
    assert!(cmdline::check("vireo.blk.packed=on vireo.blk.polled=yes vireo.net.csum=0").is_empty());
    assert!(cmdline::check("vireo.timer=periodic vireo.tsc_ref=hpet log=debug").is_empty());
    assert!(cmdline::check("vireo.net.ip=10.0.2.15/24 other=1 virtio_mmio.device=x").is_empty());
    let p = cmdline::check("vireo.blk.queues=four vireo.timer=fast vireo.blk.polled");
    assert_eq!(p.len(), 3, "{p:?}");
    assert!(
        p[0].message.contains("not a number (accepted: 1 to 64)"),
        "{}",
        p[0]
    );
    assert!(
        p[1].message.contains("not one of periodic, deadline"),
        "{}",
        p[1]
    );
    assert!(p[2].message.contains("not a boolean"), "{}", p[2]);
}

fn queue_sizes_follow_the_ring_layout() {
    for (word, used) in [
        ("vireo.blk.queue_size=2", "using 4"),
        ("vireo.blk.queue_size=1000", "using 1024"),
        ("vireo.blk.queue_size=0", "using the default"),
        ("vireo.blk.queue_size=40000", "using the default"),
        ("vireo.net.queue_size=1", "using 2"),
    ] {
        let p = cmdline::check(word);
        assert_eq!(p.len(), 1, "{word}: {p:?}");
        assert!(
            p[0].message
                .contains("split ring's size is a power of two (virtio 1.2 §2.7)")
        );
        assert!(p[0].message.contains(used), "{word}: {}", p[0]);
    }
    assert!(cmdline::check("vireo.blk.queue_size=16 vireo.net.queue_size=32768").is_empty());
}
