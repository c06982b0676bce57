//! The virtqueue core (to come: see the README's roadmap).

#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]
