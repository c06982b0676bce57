//! The control queue (`VIRTIO_NET_F_CTRL_VQ`, virtio 1.2 §5.1.6.5): one command at a time,
//! answered within a wait budget.

use alloc::boxed::Box;

use vireo_virtio::{
    AvailBufferToken, BufferType, DmaAllocator, QueueError, Virtq,
    transport::WaitBudget,
    virtio_spec::net::{Ctrl, ctrl},
};

use super::error::NetDriverError;

/// Most MAC addresses in one MAC table command (unicast and multicast together).
pub const MAX_MAC_FILTERS: usize = 64;
/// Room for the largest command: class and command bytes, two entry counts, the addresses.
pub(crate) const COMMAND_CAPACITY: usize = 2 + 2 * 4 + 6 * MAX_MAC_FILTERS;
/// `VIRTIO_NET_OK` and `VIRTIO_NET_ERR` (§5.1.6.5).
const ACK_OK: u8 = 0;
const ACK_ERR: u8 = 1;
/// What the ack byte holds before the device writes it: neither OK nor ERR.
const ACK_UNSET: u8 = 0xff;

/// The control virtqueue and its one command buffer (device-readable command, then a
/// device-writable ack byte).
pub(crate) struct CtrlQueue<A: DmaAllocator> {
    vq: Box<dyn Virtq<A> + Send>,
    /// `None` while a command is in flight (after a timeout, until the device is reset).
    token: Option<AvailBufferToken<A>>,
}

impl<A: DmaAllocator> CtrlQueue<A> {
    /// A control queue over `vq` with its command token.
    pub(crate) fn new(mut vq: Box<dyn Virtq<A> + Send>, token: AvailBufferToken<A>) -> Self {
        vq.disable_notifications();
        Self {
            vq,
            token: Some(token),
        }
    }

    /// `VIRTIO_NET_CTRL_RX_PROMISC` / `_ALLMULTI` set to `on`.
    pub(crate) fn set_rx_mode(
        &mut self,
        command: ctrl::Rx,
        on: bool,
        budget: &mut WaitBudget<'_>,
    ) -> Result<(), NetDriverError> {
        self.send(Ctrl::Rx.into(), command.into(), &[&[u8::from(on)]], budget)
    }

    /// `VIRTIO_NET_CTRL_MAC_TABLE_SET`: the unicast then the multicast table
    /// (`struct virtio_net_ctrl_mac`: a `le32` count, then the addresses).
    pub(crate) fn set_mac_table(
        &mut self,
        unicast: &[[u8; 6]],
        multicast: &[[u8; 6]],
        budget: &mut WaitBudget<'_>,
    ) -> Result<(), NetDriverError> {
        if unicast.len() + multicast.len() > MAX_MAC_FILTERS {
            return Err(NetDriverError::CtrlTooLarge);
        }
        let uni_count = (unicast.len() as u32).to_le_bytes();
        let multi_count = (multicast.len() as u32).to_le_bytes();
        let mut parts: [&[u8]; 2 * MAX_MAC_FILTERS + 2] = [&[]; 2 * MAX_MAC_FILTERS + 2];
        parts[0] = &uni_count;
        for (slot, mac) in parts[1..].iter_mut().zip(unicast) {
            *slot = mac;
        }
        parts[1 + unicast.len()] = &multi_count;
        for (slot, mac) in parts[2 + unicast.len()..].iter_mut().zip(multicast) {
            *slot = mac;
        }
        let class = Ctrl::Mac.into();
        self.send(class, ctrl::Mac::TableSet.into(), &parts, budget)
    }

    /// Sends one command (`class`, `command`, then `data` concatenated) and waits for the ack.
    ///
    /// # Errors
    /// [`NetDriverError::CtrlBusy`] (an earlier command never came back), [`NetDriverError::CtrlTooLarge`],
    /// [`NetDriverError::Transport`] with a timeout (the command stays in flight; reset the device),
    /// [`NetDriverError::CtrlRejected`], [`NetDriverError::CtrlBadAck`], [`NetDriverError::Queue`].
    fn send(
        &mut self,
        class: u8,
        command: u8,
        data: &[&[u8]],
        budget: &mut WaitBudget<'_>,
    ) -> Result<(), NetDriverError> {
        let mut token = self.token.take().ok_or(NetDriverError::CtrlBusy)?;
        let len = 2 + data.iter().map(|d| d.len()).sum::<usize>();
        // `set_len` refuses a length past the buffer's capacity.
        let filled = if let Some(buffer) = token.readable_mut().first_mut()
            && buffer.set_len(len)
        {
            buffer[0] = class;
            buffer[1] = command;
            let mut at = 2;
            for part in data {
                buffer[at..at + part.len()].copy_from_slice(part);
                at += part.len();
            }
            true
        } else {
            false
        };
        if let Some(ack) = token.writable_mut().first_mut() {
            ack[0] = ACK_UNSET;
        }
        if !filled {
            self.token = Some(token);
            return Err(NetDriverError::CtrlTooLarge);
        }
        if let Err(e) = self.vq.dispatch(token, BufferType::Direct) {
            self.token = Some(e.token);
            return Err(e.error.into());
        }
        let vq = &mut self.vq;
        let mut answer: Option<Result<_, QueueError>> = None;
        budget.wait_until(|| {
            answer = vq.poll().transpose();
            answer.is_some()
        })?;
        let used = answer.ok_or(NetDriverError::CtrlBusy)??;
        let written = used.written_len();
        let token = used.into_avail();
        let ack = match token.writable().first() {
            Some(b) if written >= 1 => b[0],
            _ => ACK_UNSET,
        };
        self.token = Some(token);
        match ack {
            ACK_OK => Ok(()),
            ACK_ERR => Err(NetDriverError::CtrlRejected),
            other => Err(NetDriverError::CtrlBadAck(other)),
        }
    }
}
