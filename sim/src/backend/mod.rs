//! The backends: drivers that move packets and time between the device and the peer. What a run
//! is (observer, phases, limits, report) lives in [`crate::run`](mod@crate::run); what each side
//! does at an instant lives in the crate's `node` module.
//!
//! - [`loopback`]: both stacks in one event loop on a virtual clock (fast, exact).
//! - [`turmoil`]: each side a turmoil host, packets as turmoil UDP datagrams, network faults as
//!   turmoil actions.

pub mod loopback;
pub mod turmoil;
