//! Typed I/O ports.
//!
//! A [`Port`] is created with `unsafe` (whoever names a port number vouches that it is safe to access
//! it); reading and writing are then safe. This keeps port `unsafe` at the one place that knows
//! which device sits behind which number.

use core::marker::PhantomData;

/// A value that moves through an I/O port in one instruction.
pub trait PortValue: Copy + sealed::Sealed {
    /// `in` from `port`.
    ///
    /// # Safety
    /// Reading `port` must have no effect that breaks memory safety.
    unsafe fn read_from(port: u16) -> Self;
    /// `out` to `port`.
    ///
    /// # Safety
    /// Writing `value` to `port` must have no effect that breaks memory safety.
    unsafe fn write_to(port: u16, value: Self);
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for u8 {}
    impl Sealed for u16 {}
    impl Sealed for u32 {}
}

macro_rules! port_value {
    ($t:ty) => {
        impl PortValue for $t {
            unsafe fn read_from(port: u16) -> Self {
                // SAFETY: the caller guarantees the read is harmless; `in` touches no memory.
                unsafe { <$t as x86_64::instructions::port::PortRead>::read_from_port(port) }
            }
            unsafe fn write_to(port: u16, value: Self) {
                // SAFETY: the caller guarantees the write is harmless; `out` touches no memory.
                unsafe { <$t as x86_64::instructions::port::PortWrite>::write_to_port(port, value) }
            }
        }
    };
}
port_value!(u8);
port_value!(u16);
port_value!(u32);

/// An I/O port carrying values of type `T`.
#[derive(Debug)]
pub struct Port<T: PortValue> {
    number: u16,
    _value: PhantomData<T>,
}

impl<T: PortValue> Port<T> {
    /// Names port `number`.
    ///
    /// # Safety
    /// Every read and write of `T` at `number`, at any time, must be unable to break memory safety
    /// (e.g. it must not start a DMA into memory the kernel owns).
    pub const unsafe fn new(number: u16) -> Self {
        Self {
            number,
            _value: PhantomData,
        }
    }

    /// Reads the port.
    pub fn read(&mut self) -> T {
        // SAFETY: `new`'s contract makes every read of this port harmless.
        unsafe { T::read_from(self.number) }
    }

    /// Writes the port.
    pub fn write(&mut self, value: T) {
        // SAFETY: `new`'s contract makes every write of this port harmless.
        unsafe { T::write_to(self.number, value) }
    }
}
