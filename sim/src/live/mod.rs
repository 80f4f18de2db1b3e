//! Live mode (`fwsim serve`): the unchanged firmware core on a TUN interface, on the wall
//! clock, against real clients. One file per concept:
//!
//! - [`addr`]: `--addr A/PREFIX`, the device's and the host's addresses;
//! - [`tun`]: the TUN interface (created, configured, up/down, gone with the process);
//! - [`clock`]: the wall clock as the core's time;
//! - `run`: the live loop around the simulator's device node and link model;
//! - [`wire`]: the host's side of each connection as the wire shows it (peer events);
//! - [`events`]: the JSON lines of `serve --json`, and reading them back;
//! - `tally`: each connection judged and dropped once its verdict is final;
//! - [`join`]: client records joined with the device's events through the oracle;
//! - [`control`]: the control endpoint (the vendor test app's USB requests over HTTP).

pub mod addr;
pub mod clock;
pub mod control;
pub mod error;
pub mod events;
pub mod join;
mod run;
mod tally;
pub mod tun;
pub mod wire;

pub use addr::LiveAddr;
pub use error::LiveError;
pub use events::LiveEvent;
pub use join::{join, ClientRecord};
pub use run::{Live, ServeOptions, Served};
