//! The firmware side of fwsim: a Wi-Fi board's TCP server as sans-IO Rust.
//!
//! [`Device`] is a smoltcp interface plus a model of the Device OS socket HAL
//! ([`hal`]), whose behaviour is chosen by a [`Policy`]: [`Policy::LEGACY`] reproduces the
//! Device OS 0.5.x rules that lose data when the peer's FIN is processed before the
//! application drained the connection; [`Policy::FIXED`] loses nothing. On top sits the
//! Wiring API the sketches call ([`TcpServer`], [`TcpClient`]) and the firmware apps
//! ([`app`]) as plain Rust.
//!
//! The host owns time and the link: it calls [`Device::poll`] with a `smoltcp::phy::Device`,
//! asks [`Device::poll_at`] when to call again, and runs [`app::App::loop_once`] on its own
//! schedule. Nothing here reads a clock or a random source; seeds come in [`DeviceSeeds`].
//!
//! Cargo features: `testkit` (the back-to-back test bench `testkit`, for other crates' tests) and
//! `serde` (range-checked `Serialize`/`Deserialize` for [`DeviceConfig`]; stays no_std).
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

pub mod app;
mod device;
pub mod event;
pub mod hal;
mod ingress;
pub mod policy;
#[cfg(feature = "serde")]
pub mod range;
pub mod stacks;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
mod wiring;

pub use device::{Device, DeviceSeeds};
pub use event::{AppEvent, AppEventSink, ConnId, DeviceEvent};
pub use policy::{
    ConfigError, ConnectedRule, DeviceConfig, EofRule, Policy, PoolOverflow, RxCopy,
    StopWithUnread, SynOverflow,
};
/// The smoltcp the device runs, so hosts build links and peers from the same types.
pub use smoltcp;
pub use stacks::{StackPreset, STACKS};
pub use wiring::{TcpClient, TcpServer};
