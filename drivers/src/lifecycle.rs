//! Device lifecycle steps every driver shares: renegotiation after a reset, and the reset that
//! must be confirmed before a device's rings and buffers may be freed.

use vireo_virtio::{
    transport::{Device, Transport, TransportError},
    virtio_spec::DeviceStatus,
};

/// Steps 2–6 of virtio 1.2 §3.1.1 after a reset, accepting the features negotiated at
/// initialisation (a device that no longer offers them is refused).
///
/// # Errors
/// [`TransportError::FeaturesRejected`].
pub(crate) fn renegotiate<T: Transport>(device: &mut Device<T>) -> Result<(), TransportError> {
    let features = device.features();
    let t = device.transport_mut();
    t.set_status(DeviceStatus::ACKNOWLEDGE);
    t.set_status(DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER);
    if !t.device_features().contains(features) {
        return Err(TransportError::FeaturesRejected);
    }
    t.set_driver_features(features);
    t.set_status(DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER | DeviceStatus::FEATURES_OK);
    if !t.status().contains(DeviceStatus::FEATURES_OK) {
        return Err(TransportError::FeaturesRejected);
    }
    Ok(())
}

/// Resets the device without a clock (for `Drop`): writes 0 and reads the status at most
/// `polls` times. Returns whether the device confirmed the reset (status 0); only then may the
/// memory it could reach be freed.
pub(crate) fn reset_polled<T: Transport>(device: &mut Device<T>, polls: u32) -> bool {
    let t = device.transport_mut();
    t.set_status(DeviceStatus::empty());
    (0..polls.max(1)).any(|_| t.status().is_empty())
}
