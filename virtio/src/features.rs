//! Feature negotiation for the transport-level bits the virtqueue core drives
//! (virtio 1.2 §2.2, §6).

use virtio_spec::{F, le128};

use crate::error::FeatureError;

/// Feature bits 24..=49 are reserved for the queue and transport (virtio 1.2 §2.2, §6); the
/// others belong to the device type and are the driver's business.
const TRANSPORT_BITS: u128 = ((1 << 50) - 1) & !((1 << 24) - 1);

/// The transport-level features this core implements and so may accept.
///
/// `VIRTIO_F_RING_PACKED` is here because [`PackedVq`](crate::PackedVq) drives it;
/// `VIRTIO_F_RING_RESET` because [`Virtq::reset`](crate::Virtq::reset) returns a queue to its
/// initial state. Anything else in 24..=49 (e.g. `ACCESS_PLATFORM`, `ORDER_PLATFORM`, `SR_IOV`)
/// is never accepted.
#[must_use]
pub fn implemented() -> F {
    F::VERSION_1
        | F::INDIRECT_DESC
        | F::EVENT_IDX
        | F::RING_PACKED
        | F::IN_ORDER
        | F::NOTIFICATION_DATA
        | F::RING_RESET
}

/// Chooses the features to accept (virtio 1.2 §3.1.1 step 4).
///
/// A bit is accepted only if the device offers it, the driver wants it, and — for the
/// transport bits 24..=49 — this core implements it. Device-type bits pass through when offered
/// and wanted. `VIRTIO_F_VERSION_1` is always accepted, wanted or not.
///
/// # Errors
///
/// [`FeatureError::Version1NotOffered`] if the device is legacy-only.
pub fn negotiate(device_offered: F, driver_wanted: F) -> Result<F, FeatureError> {
    if !device_offered.contains(F::VERSION_1) {
        return Err(FeatureError::Version1NotOffered);
    }
    let offered = device_offered.bits().to_ne();
    let wanted = (driver_wanted | F::VERSION_1).bits().to_ne();
    let allowed = !TRANSPORT_BITS | implemented().bits().to_ne();
    Ok(F::from_bits_retain(le128::from_ne(
        offered & wanted & allowed,
    )))
}

/// The negotiated features that change how a ring is driven.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RingFeatures {
    pub(crate) event_idx: bool,
    pub(crate) indirect_desc: bool,
    pub(crate) in_order: bool,
    pub(crate) notification_data: bool,
}

impl RingFeatures {
    pub(crate) fn from_negotiated(features: F) -> Self {
        Self {
            event_idx: features.contains(F::EVENT_IDX),
            indirect_desc: features.contains(F::INDIRECT_DESC),
            in_order: features.contains(F::IN_ORDER),
            notification_data: features.contains(F::NOTIFICATION_DATA),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_1_is_required() {
        assert_eq!(
            negotiate(F::EVENT_IDX, F::EVENT_IDX),
            Err(FeatureError::Version1NotOffered)
        );
    }

    #[test]
    fn accepts_only_offered_wanted_and_implemented() {
        let offered = F::VERSION_1 | F::EVENT_IDX | F::ACCESS_PLATFORM | F::SR_IOV | F::IN_ORDER;
        let wanted = F::EVENT_IDX | F::ACCESS_PLATFORM | F::SR_IOV | F::RING_PACKED;
        let got = negotiate(offered, wanted).unwrap();
        assert_eq!(got, F::VERSION_1 | F::EVENT_IDX);
    }

    #[test]
    fn version_1_is_accepted_whether_the_driver_names_it_or_not() {
        for wanted in [
            F::VERSION_1,
            F::VERSION_1 | F::EVENT_IDX,
            F::EVENT_IDX,
            F::empty(),
        ] {
            let got = negotiate(F::VERSION_1 | F::EVENT_IDX, wanted).unwrap();
            assert!(got.contains(F::VERSION_1), "wanted {wanted:?} gave {got:?}");
            assert_eq!(got.contains(F::EVENT_IDX), wanted.contains(F::EVENT_IDX));
        }
    }

    #[test]
    fn device_type_bits_pass_through() {
        let blk_ro = F::from_bits_retain(le128::from_ne(1 << 5));
        let got = negotiate(F::VERSION_1 | blk_ro, blk_ro).unwrap();
        assert_eq!(got, F::VERSION_1 | blk_ro);
        let not_wanted = negotiate(F::VERSION_1 | blk_ro, F::empty()).unwrap();
        assert_eq!(not_wanted, F::VERSION_1);
    }

    #[test]
    fn packed_in_order_and_notification_data_accepted_when_offered() {
        let all = implemented();
        assert_eq!(negotiate(all, all).unwrap(), all);
        let ring = RingFeatures::from_negotiated(all);
        assert!(ring.event_idx && ring.indirect_desc && ring.in_order && ring.notification_data);
    }
}
