//! Device lifecycle steps every driver shares: the bring-up sequence around a driver's own
//! steps ([`BringUp`]: failure path, re-initialisation after a reset), renegotiation after a
//! reset, and the device lifetime rule (DESIGN.md): the memory a device may reach — its rings and the buffers posted
//! on them — goes back to the allocator only after a reset the device confirmed, and is leaked
//! otherwise.

use alloc::{boxed::Box, vec::Vec};
use core::{
    mem,
    ops::{Deref, DerefMut},
};

use vireo_virtio::{
    DmaAllocator, Virtq,
    transport::{Device, Transport, TransportError, WaitBudget},
    virtio_spec::DeviceStatus,
};

/// The device bring-up sequence shared by the drivers (virtio 1.2 §3.1.1): a driver supplies
/// its own steps (configuration, queues, `DRIVER_OK`, what follows) and its teardown; the order
/// around them — what happens on failure, and the reset, renegotiation and new bring-up of a
/// re-initialisation — is written here once.
pub(crate) trait BringUp {
    /// The driver's transport.
    type Transport: Transport;
    /// The driver's error type.
    type Error: From<TransportError>;

    /// The device the driver runs.
    fn device_mut(&mut self) -> &mut Device<Self::Transport>;

    /// The driver's steps after feature negotiation: read the configuration, create the
    /// queues (held in [`DeviceMemory`]), set `DRIVER_OK` and whatever must follow it.
    ///
    /// # Errors
    /// Any step's error; [`bring_up`](Self::bring_up) then tears down.
    fn try_bring_up(
        &mut self,
        vectors: &[Option<u16>],
        budget: &mut WaitBudget<'_>,
    ) -> Result<(), Self::Error>;

    /// Resets the device and frees what it may reach if the reset is confirmed (within
    /// `budget` if there is one, else a few status reads), leaking it otherwise.
    fn teardown(&mut self, budget: Option<&mut WaitBudget<'_>>);

    /// Runs [`try_bring_up`](Self::try_bring_up); on failure resets the device before its
    /// memory is freed ([`teardown`](Self::teardown)) and sets `FAILED`.
    ///
    /// # Errors
    /// What [`try_bring_up`](Self::try_bring_up) reports.
    fn bring_up(
        &mut self,
        vectors: &[Option<u16>],
        budget: &mut WaitBudget<'_>,
    ) -> Result<(), Self::Error> {
        let result = self.try_bring_up(vectors, budget);
        if result.is_err() {
            self.teardown(Some(budget));
            self.device_mut().fail();
        }
        result
    }

    /// Re-initialisation: resets the device (waiting within `budget`), hands the memory it
    /// gave back to `reclaim` with the proof of the reset, renegotiates the features of the
    /// first initialisation and brings the device up again ([`bring_up`](Self::bring_up)).
    ///
    /// # Errors
    /// A reset timeout (nothing is reclaimed: the device may still use its memory); refused
    /// features (the device is left `FAILED`); what [`bring_up`](Self::bring_up) reports.
    fn reset_and_bring_up(
        &mut self,
        vectors: &[Option<u16>],
        budget: &mut WaitBudget<'_>,
        reclaim: impl FnOnce(&mut Self, &ResetConfirmed),
    ) -> Result<(), Self::Error> {
        let confirmed = reset(self.device_mut(), budget)?;
        reclaim(self, &confirmed);
        if let Err(e) = renegotiate(self.device_mut()) {
            self.device_mut().fail();
            return Err(e.into());
        }
        self.bring_up(vectors, budget)
    }
}

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

/// Proof that the device confirmed a reset (its status read 0, virtio 1.2 §4.1.4.3.2): it no
/// longer reads or writes the memory it was given, which may now be freed or reused.
#[derive(Debug)]
pub(crate) struct ResetConfirmed(());

/// Resets the device, waiting within `budget` for it to confirm.
///
/// # Errors
/// [`TransportError::Timeout`] if the device does not confirm: it may still use its memory.
pub(crate) fn reset<T: Transport>(
    device: &mut Device<T>,
    budget: &mut WaitBudget<'_>,
) -> Result<ResetConfirmed, TransportError> {
    device.reset(budget).map(|()| ResetConfirmed(()))
}

/// Resets the device so that its memory can be freed: within `budget` if there is one, then —
/// the budget spent (say, on a command that timed out), or no clock at all (in `Drop`) — with up
/// to `polls` further status reads. `None` if the device never confirmed.
pub(crate) fn reset_for_teardown<T: Transport>(
    device: &mut Device<T>,
    budget: Option<&mut WaitBudget<'_>>,
    polls: u32,
) -> Option<ResetConfirmed> {
    let confirmed = budget.is_some_and(|b| device.reset(b).is_ok()) || {
        let t = device.transport_mut();
        t.set_status(DeviceStatus::empty());
        (0..polls.max(1)).any(|_| t.status().is_empty())
    };
    confirmed.then_some(ResetConfirmed(()))
}

/// Memory a device may reach (`M`: its queues and, inside them, the buffers in flight), held
/// under the lifetime rule.
///
/// The driver reads and changes it in place (`Deref`); it leaves only with a proof of reset
/// ([`reclaim`](Self::reclaim)) or through [`release`](Self::release), which leaks it without
/// one. A holder dropped while it still holds memory — a path that skipped the reset — leaks
/// it too: a missed reset costs memory, never a device writing into freed memory.
pub(crate) struct DeviceMemory<M: Default>(M);

impl<M: Default> DeviceMemory<M> {
    /// An empty holder.
    pub(crate) fn new() -> Self {
        Self(M::default())
    }

    /// Takes the memory back, leaving the holder empty: the device has confirmed a reset.
    pub(crate) fn reclaim(&mut self, _reset: &ResetConfirmed) -> M {
        mem::take(&mut self.0)
    }

    /// Empties the holder: the memory is freed if the device confirmed a reset (`Some`), leaked
    /// (never freed, never reused) otherwise.
    pub(crate) fn release(&mut self, reset: Option<&ResetConfirmed>) {
        let memory = mem::take(&mut self.0);
        if reset.is_none() {
            mem::forget(memory);
        }
    }
}

impl<A: DmaAllocator + Send + 'static> DeviceMemory<Vec<Box<dyn Virtq<A> + Send>>> {
    /// Creates queue `index` as [`Device::create_queue`] does and holds it at once: from the
    /// moment the device knows its rings, only a confirmed reset frees them.
    ///
    /// # Errors
    /// What [`Device::create_queue`] reports (nothing is held then).
    pub(crate) fn create_queue<T>(
        &mut self,
        device: &mut Device<T>,
        index: u16,
        size: u16,
        alloc: A,
        vector: Option<u16>,
    ) -> Result<(), TransportError>
    where
        T: Transport,
        T::Notifier: Send + 'static,
    {
        let vq = device.create_queue(index, size, alloc, vector)?;
        self.0.push(vq);
        Ok(())
    }
}

impl<M: Default> Deref for DeviceMemory<M> {
    type Target = M;

    fn deref(&self) -> &M {
        &self.0
    }
}

impl<M: Default> DerefMut for DeviceMemory<M> {
    fn deref_mut(&mut self) -> &mut M {
        &mut self.0
    }
}

impl<M: Default> Drop for DeviceMemory<M> {
    /// Leaks what is still held: nothing proved the device stopped using it.
    fn drop(&mut self) {
        mem::forget(mem::take(&mut self.0));
    }
}

#[cfg(test)]
mod tests {
    use vireo_virtio::mock::GuestDma;

    use super::*;

    #[test]
    fn memory_never_released_is_leaked_on_drop_not_freed() {
        let dma = GuestDma::new(1 << 16);
        let mut held = DeviceMemory::<Vec<_>>::new();
        held.push(dma.buffer(&[1; 64]));
        held.push(dma.buffer(&[2; 64]));
        assert_eq!(dma.live(), 2);
        // No `release` after a confirmed reset: the device may still be using it.
        drop(held);
        assert_eq!(dma.live(), 2, "the blocks stay allocated");
    }
}
