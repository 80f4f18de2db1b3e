//! Why `fwsim serve` could not start or had to stop: each names the flag it comes from.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use super::addr::AddrError;
use super::tun::TunError;
use crate::scenario::ScenarioError;

/// A live run that could not be carried out.
#[derive(Debug)]
pub enum LiveError {
    /// `--addr` is not usable.
    Addr(AddrError),
    /// The TUN interface could not be set up.
    Tun(TunError),
    /// `--pcap FILE` could not be created or written.
    Pcap(PathBuf, io::Error),
    /// `--control ADDR` is not a loopback address.
    ControlNotLoopback(SocketAddr),
    /// `--control ADDR` could not be listened on.
    Control(SocketAddr, String),
    /// The device's settings are not valid.
    Scenario(ScenarioError),
    /// Waiting on the TUN interface failed.
    Wait(io::Error),
}

impl fmt::Display for LiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LiveError::Addr(e) => e.fmt(f),
            LiveError::Tun(e) => e.fmt(f),
            LiveError::Pcap(p, e) => write!(f, "--pcap {}: {e}", p.display()),
            LiveError::ControlNotLoopback(a) => write!(
                f,
                "--control {a}: the control endpoint listens on loopback addresses only \
                 (127.0.0.1:PORT)"
            ),
            LiveError::Control(a, e) => write!(f, "--control {a}: cannot listen: {e}"),
            LiveError::Scenario(e) => e.fmt(f),
            LiveError::Wait(e) => write!(f, "waiting on the TUN interface failed: {e}"),
        }
    }
}

impl std::error::Error for LiveError {}

impl From<TunError> for LiveError {
    fn from(e: TunError) -> Self {
        LiveError::Tun(e)
    }
}

impl From<AddrError> for LiveError {
    fn from(e: AddrError) -> Self {
        LiveError::Addr(e)
    }
}
