//! The TUN interface live mode runs on: created (never attached to an existing one), given the
//! host's address, brought up and down, and gone when the process lets go of it (a TUN that
//! was not made persistent disappears with its file descriptor, even after a crash).

use std::fmt;
use std::io;
use std::os::unix::io::{AsRawFd, RawFd};
use std::path::Path;
use std::process::Command;

use firmware_core::smoltcp::phy::{self, Medium, RxToken, TunTapInterface, TxToken};
use firmware_core::smoltcp::time::Instant;

use super::addr::LiveAddr;

/// Why the TUN interface could not be set up.
#[derive(Debug)]
pub enum TunError {
    /// Not a usable interface name (1 to 15 characters, no `/`, whitespace or `:`).
    BadName(String),
    /// An interface of that name exists already (live mode never takes one over).
    Exists(String),
    /// `/dev/net/tun` is missing (no TUN support in this kernel or container).
    NoTunDevice,
    /// Creating a TUN interface needs root or `CAP_NET_ADMIN`.
    NoPermission,
    /// The kernel refused the interface.
    Create(io::Error),
    /// The device's or the host's address is already on an interface of this machine.
    AddrInUse(String),
    /// `ip` (iproute2) is missing.
    NoIpTool,
    /// An `ip` command failed: the command and what it said.
    Configure(String),
    /// The interface was deleted from outside while `serve` ran.
    Gone(String),
}

impl fmt::Display for TunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TunError::BadName(n) => write!(
                f,
                "--tun {n:?}: not an interface name (1-15 characters, no '/', ':' or spaces)"
            ),
            TunError::Exists(n) => write!(
                f,
                "--tun {n}: an interface of that name exists already; choose another name"
            ),
            TunError::NoTunDevice => f.write_str(
                "--tun: /dev/net/tun is missing: this kernel or container has no TUN support",
            ),
            TunError::NoPermission => f.write_str(
                "--tun: no permission to create a TUN interface (run as root or with CAP_NET_ADMIN)",
            ),
            TunError::Create(e) => write!(f, "--tun: cannot create the interface: {e}"),
            TunError::AddrInUse(a) => write!(
                f,
                "--addr: {a} is already assigned to an interface of this machine"
            ),
            TunError::NoIpTool => {
                f.write_str("--tun: the `ip` command (iproute2) is needed to configure the interface")
            }
            TunError::Configure(e) => write!(f, "--tun: configuring the interface failed: {e}"),
            TunError::Gone(n) => write!(f, "--tun {n}: the interface was deleted while serving"),
        }
    }
}

impl std::error::Error for TunError {}

/// A TUN interface this process created.
pub struct Tun {
    iface: TunTapInterface,
    name: String,
    /// Up as far as `serve` is concerned (the device's Wi-Fi connected).
    up: bool,
    /// Up as the kernel last said ([`Tun::check`]).
    kernel_up: bool,
}

/// Runs `ip ARGS`, turning a failure into its message.
fn ip(args: &[&str]) -> Result<String, TunError> {
    let out = Command::new("ip").args(args).output().map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            TunError::NoIpTool
        } else {
            TunError::Configure(format!("ip {}: {e}", args.join(" ")))
        }
    })?;
    if !out.status.success() {
        return Err(TunError::Configure(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn check_name(name: &str) -> Result<(), TunError> {
    let bad = name.is_empty()
        || name.len() > 15
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    if bad {
        return Err(TunError::BadName(name.into()));
    }
    Ok(())
}

impl Tun {
    /// Creates the interface `name`, gives the host side `addr.host/prefix` and brings it up.
    /// On any error nothing is left behind.
    pub fn create(name: &str, addr: &LiveAddr) -> Result<Tun, TunError> {
        check_name(name)?;
        if Path::new("/sys/class/net").join(name).exists() {
            return Err(TunError::Exists(name.into()));
        }
        // Addresses already on this machine would capture the traffic before the TUN sees it.
        let addrs = ip(&["-o", "-4", "addr", "show"])?;
        for a in [addr.device, addr.host] {
            let needle = format!("inet {a}/");
            if addrs.contains(&needle) {
                return Err(TunError::AddrInUse(a.to_string()));
            }
        }
        let iface = TunTapInterface::new(name, Medium::Ip).map_err(|e| match e.raw_os_error() {
            Some(1) | Some(13) => TunError::NoPermission,
            Some(2) | Some(6) | Some(19) => TunError::NoTunDevice,
            _ => TunError::Create(e),
        })?;
        let mut tun = Tun {
            iface,
            name: name.into(),
            up: false,
            kernel_up: false,
        };
        let cidr = format!("{}/{}", addr.host, addr.prefix_len);
        ip(&["addr", "add", &cidr, "dev", name])?;
        tun.set_up(true)?;
        tun.check()?;
        Ok(tun)
    }

    /// The interface's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True while the interface is up.
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Brings the interface up or down (a Wi-Fi connect or disconnect of the device).
    pub fn set_up(&mut self, up: bool) -> Result<(), TunError> {
        ip(&["link", "set", &self.name, if up { "up" } else { "down" }])?;
        self.up = up;
        self.check()
    }

    /// Looks at the interface as the kernel has it: gone is an error; down from outside
    /// (`ip link set NAME down`) stops the traffic as our own down does. smoltcp's TUN device
    /// panics on a read or write error, so nothing is read or written unless this says the
    /// interface is there and up.
    pub fn check(&mut self) -> Result<(), TunError> {
        let flags = Path::new("/sys/class/net").join(&self.name).join("flags");
        let text = std::fs::read_to_string(flags).map_err(|_| TunError::Gone(self.name.clone()))?;
        let flags = u32::from_str_radix(text.trim().trim_start_matches("0x"), 16).unwrap_or(0);
        // IFF_UP.
        self.kernel_up = flags & 1 != 0;
        Ok(())
    }

    /// The next packet the host sent toward the device, if one waits.
    pub fn recv(&mut self, now: Instant) -> Option<Vec<u8>> {
        if !(self.up && self.kernel_up) {
            return None;
        }
        let (rx, _) = phy::Device::receive(&mut self.iface, now)?;
        Some(rx.consume(|p| p.to_vec()))
    }

    /// Hands a packet of the device to the host (dropped while the interface is down, as a
    /// Wi-Fi radio that is off sends nothing).
    pub fn send(&mut self, now: Instant, packet: &[u8]) {
        if !(self.up && self.kernel_up) {
            return;
        }
        if let Some(tx) = phy::Device::transmit(&mut self.iface, now) {
            tx.consume(packet.len(), |buf| buf.copy_from_slice(packet));
        }
    }
}

impl AsRawFd for Tun {
    fn as_raw_fd(&self) -> RawFd {
        self.iface.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_are_checked_before_anything_is_created() {
        for bad in ["", "a/b", "with space", "sixteen-chars-xx", "a:b", ".."] {
            let e = check_name(bad).unwrap_err().to_string();
            assert!(e.starts_with("--tun"), "{bad:?}: {e}");
        }
        assert!(check_name("fwsim0").is_ok());
    }
}
