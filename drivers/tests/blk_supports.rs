//! `BlkDriver::supports` (what the kernel advertises to applications) agrees with what the
//! driver accepts, for every combination of the features that decide it (virtio 1.2 §5.2.3):
//! when it says yes the request goes through, when it says no the request is refused before it
//! reaches the device, as read-only or unsupported.

mod support;

use support::*;
use vireo_drivers::blk::{BlkDriverError, BlkOptions, Output, RequestKind};
use vireo_virtio::virtio_spec::F;

#[test]
fn supports_matches_what_the_driver_accepts() {
    let deciding = [RO, FLUSH, DISCARD, WRITE_ZEROES];
    for mask in 0..1u32 << deciding.len() {
        let offered = deciding
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .fold(SIZE_MAX | SEG_MAX | BLK_SIZE, |acc, (_, f)| acc | *f);
        let has = |f: F| offered.contains(f);
        let mut sim = Sim::new(offered, &BlkConfig::default());
        let mut drv = sim.driver(BlkOptions::default());
        for kind in KINDS {
            // §5.2.3: reads and get-id always; writes, discard and write-zeroes not on a
            // read-only device; flush, discard and write-zeroes only when offered.
            let expected = match kind {
                RequestKind::Read | RequestKind::GetId => true,
                RequestKind::Write => !has(RO),
                RequestKind::Flush => has(FLUSH),
                RequestKind::Discard => !has(RO) && has(DISCARD),
                RequestKind::WriteZeroes => !has(RO) && has(WRITE_ZEROES),
            };
            let supported = drv.supports(kind);
            assert_eq!(supported, expected, "{offered:?} {kind:?}");
            let request = request_of(kind, &sim.dma);
            if supported {
                let c = run(&mut sim, &mut drv, 0, request);
                assert!(
                    matches!(c.result, Ok(Output::Done | Output::Id(_))),
                    "{offered:?} {kind:?}: {:?}",
                    c.result
                );
            } else {
                let refused = drv.submit(0, request).expect_err("refused");
                assert!(
                    matches!(
                        refused.error,
                        BlkDriverError::ReadOnly | BlkDriverError::Unsupported
                    ),
                    "{offered:?} {kind:?}: {:?}",
                    refused.error
                );
                assert_eq!(sim.serve(0), 0, "nothing reached the device");
            }
        }
    }
}
