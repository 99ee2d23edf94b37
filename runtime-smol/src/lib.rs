//! The smol runtime adapter of the Terminus gateway.
