//! End-to-end tests of the Terminus gateway against real peers.
