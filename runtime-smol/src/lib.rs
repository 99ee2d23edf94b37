//! The smol runtime adapter of the Terminus gateway.

pub mod tasks;
