//! PCI arithmetic: function addresses and the configuration-write rules, BAR decoding (PCI Local
//! Bus 3.0 §6.2.5.1), the windows BARs are placed in, and bridge windows (PCI-PCI Bridge 1.2
//! §3.2.5). Configuration-space access stays in the kernel.

pub mod bar;
pub mod bridge;
pub mod config;
pub mod window;
pub mod windows;
