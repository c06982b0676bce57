//! virtio device drivers (to come: see the README's roadmap).

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
