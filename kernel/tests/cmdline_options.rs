//! Bad kernel command-line options are reported at boot with the option, the value, what is
//! accepted and what is used instead; the disk still comes up with a queue size its requests fit
//! in. The rule itself, option by option, is tested on the host (`kcore/src/cmdline.rs`).
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
