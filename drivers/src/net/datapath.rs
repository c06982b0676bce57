//! The driver's own data-path and filtering calls (the smoltcp device in `phy` is built on
//! the same queue operations).

use vireo_virtio::{
    DmaAllocator, RingState, transport::Transport, transport::WaitBudget, virtio_spec::net,
};

use super::{NetDriver, error::NetDriverError, tx::TxChecksum};

impl<T: Transport, A: DmaAllocator + 'static> NetDriver<T, A> {
    /// Receives the next frame, if one is waiting: `f` sees its bytes (Ethernet header first,
    /// no net header) in the DMA buffer itself, or in a reassembly copy when it spanned several
    /// merged buffers. The buffer then goes back to the pool, posted again in the next batched
    /// refill. Malformed frames are dropped and counted in [`stats`](Self::stats).
    ///
    /// # Errors
    /// [`NetDriverError::NotReady`]; [`NetDriverError::Queue`] when the device broke the ring protocol
    /// (call [`reset_and_reinit`](Self::reset_and_reinit)).
    pub fn receive<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Result<Option<R>, NetDriverError> {
        let rx = &mut self.queues_mut()?.rx;
        let Some(held) = rx.next()? else {
            return Ok(None);
        };
        let result = f(rx.frame(&held));
        rx.release(held);
        Ok(Some(result))
    }

    /// Writes a frame of `len` bytes with `f` straight into a free transmit buffer and adds it
    /// to the batch; [`flush`](Self::flush) hands the batch to the device with one
    /// notification. `f` gets exactly `len` bytes, holding an earlier frame: it must write all
    /// of them. Used buffers are reclaimed here when none is free.
    ///
    /// # Errors
    /// [`NetDriverError::FrameTooLarge`], [`NetDriverError::TxFull`] (every buffer in flight or batched:
    /// flush, let the device work, retry), [`NetDriverError::NotReady`], [`NetDriverError::Queue`].
    pub fn transmit<R>(
        &mut self,
        len: usize,
        f: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<R, NetDriverError> {
        Ok(f(self.queues_mut()?.tx.reserve(len, None)?))
    }

    /// [`transmit`](Self::transmit) with checksum offload (`VIRTIO_NET_F_CSUM`): the device
    /// completes the checksum described by `csum`.
    ///
    /// # Errors
    /// As [`transmit`](Self::transmit), and [`NetDriverError::ChecksumOffload`] when `CSUM` was
    /// not negotiated or the checksum field lies outside the frame.
    pub fn transmit_with_checksum<R>(
        &mut self,
        len: usize,
        csum: TxChecksum,
        f: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<R, NetDriverError> {
        Ok(f(self.queues_mut()?.tx.reserve(len, Some(csum))?))
    }

    /// Makes every batched frame available to the device, with at most one notification.
    /// Returns whether the device was notified.
    ///
    /// # Errors
    /// [`NetDriverError::NotReady`], [`NetDriverError::Queue`].
    pub fn flush(&mut self) -> Result<bool, NetDriverError> {
        self.queues_mut()?.tx.flush()
    }

    /// Takes back the transmit buffers the device has finished with (also done lazily by
    /// [`transmit`](Self::transmit)); returns how many.
    ///
    /// # Errors
    /// [`NetDriverError::NotReady`], [`NetDriverError::Queue`].
    pub fn reclaim_tx(&mut self) -> Result<usize, NetDriverError> {
        self.queues_mut()?.tx.reclaim()
    }

    /// Frames handed to the device or batched, and not yet reclaimed.
    #[must_use]
    pub fn tx_outstanding(&self) -> usize {
        self.queues.as_ref().map_or(0, |q| q.tx.outstanding())
    }

    /// Receive buffers posted to the device, and spare ones waiting for the next refill.
    #[must_use]
    pub fn rx_buffers(&self) -> (usize, usize) {
        self.queues
            .as_ref()
            .map_or((0, 0), |q| (q.rx.posted(), q.rx.spare()))
    }

    /// Posts every spare receive buffer, then asks the device for used-buffer notifications on
    /// the rx queue. Returns `true` if frames are already waiting: poll
    /// ([`receive`](Self::receive)) instead of sleeping, or their notification may never come.
    ///
    /// # Errors
    /// [`NetDriverError::NotReady`], [`NetDriverError::Queue`].
    pub fn enable_rx_notifications(&mut self) -> Result<bool, NetDriverError> {
        self.queues_mut()?.rx.enable_notifications()
    }

    /// Asks the device not to notify the driver of received frames (NAPI-style polling).
    ///
    /// # Errors
    /// [`NetDriverError::NotReady`].
    pub fn disable_rx_notifications(&mut self) -> Result<(), NetDriverError> {
        self.queues_mut()?.rx.disable_notifications();
        Ok(())
    }

    /// Notifies the device again of the rx queue, and of the tx queue if it holds frames,
    /// whatever their suppression state says: a lost notification would leave the device
    /// without receive buffers, or with frames it never sends (the tx ring then stays full).
    ///
    /// # Errors
    /// [`NetDriverError::NotReady`].
    pub fn renotify(&mut self) -> Result<(), NetDriverError> {
        let q = self.queues_mut()?;
        q.rx.renotify();
        q.tx.renotify();
        Ok(())
    }

    /// The notification state of the rx queue's ring, for diagnostics.
    ///
    /// # Errors
    /// [`NetDriverError::NotReady`].
    pub fn rx_ring_state(&self) -> Result<RingState, NetDriverError> {
        let q = self.queues.as_ref().ok_or(NetDriverError::NotReady)?;
        Ok(q.rx.ring_state())
    }

    /// Turns promiscuous mode on or off (`VIRTIO_NET_CTRL_RX_PROMISC`), waiting for the
    /// device's answer within `budget`.
    ///
    /// # Errors
    /// [`NetDriverError::NoControlQueue`] without `CTRL_VQ` and `CTRL_RX`, and the errors of a
    /// control command (see [`NetDriverError`]).
    pub fn set_promiscuous(
        &mut self,
        on: bool,
        budget: &mut WaitBudget<'_>,
    ) -> Result<(), NetDriverError> {
        self.rx_filter()?
            .set_rx_mode(net::ctrl::Rx::Promisc, on, budget)
    }

    /// Turns all-multicast reception on or off (`VIRTIO_NET_CTRL_RX_ALLMULTI`).
    ///
    /// # Errors
    /// As [`set_promiscuous`](Self::set_promiscuous).
    pub fn set_all_multicast(
        &mut self,
        on: bool,
        budget: &mut WaitBudget<'_>,
    ) -> Result<(), NetDriverError> {
        self.rx_filter()?
            .set_rx_mode(net::ctrl::Rx::Allmulti, on, budget)
    }

    /// Sets the MAC filter table (`VIRTIO_NET_CTRL_MAC_TABLE_SET`): addresses received besides
    /// the device's own MAC and broadcast, at most
    /// [`MAX_MAC_FILTERS`](super::MAX_MAC_FILTERS) in all. The kernel adds the
    /// solicited-node multicast address of each IPv6 address it configures.
    ///
    /// # Errors
    /// As [`set_promiscuous`](Self::set_promiscuous), and [`NetDriverError::CtrlTooLarge`].
    pub fn set_mac_table(
        &mut self,
        unicast: &[[u8; 6]],
        multicast: &[[u8; 6]],
        budget: &mut WaitBudget<'_>,
    ) -> Result<(), NetDriverError> {
        self.rx_filter()?.set_mac_table(unicast, multicast, budget)
    }

    fn rx_filter(&mut self) -> Result<&mut super::ctrl::CtrlQueue<A>, NetDriverError> {
        let filtering = super::config::has(self.features(), net::F::CTRL_RX);
        match self.queues_mut()?.ctrl.as_mut() {
            Some(ctrl) if filtering => Ok(ctrl),
            _ => Err(NetDriverError::NoControlQueue),
        }
    }
}
