//! `--addr A/PREFIX`: the device's address on the TUN link, and the host side's address in the
//! same network (the first other usable address of the prefix).

use std::fmt;
use std::net::Ipv4Addr;

use firmware_core::smoltcp::wire::Ipv4Address;

/// The two ends of the TUN link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveAddr {
    /// The firmware device's address (what clients connect to).
    pub device: Ipv4Addr,
    /// The prefix length of the link's network.
    pub prefix_len: u8,
    /// The Linux side of the TUN interface.
    pub host: Ipv4Addr,
}

/// Why `--addr` is not usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddrError {
    /// Not `A.B.C.D/PREFIX`.
    Malformed(String),
    /// The prefix leaves no room for two hosts (more than /30), or the address is the
    /// network's or its broadcast address.
    NoRoom(String),
}

impl fmt::Display for AddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddrError::Malformed(v) => write!(
                f,
                "--addr {v:?}: expected an IPv4 address and prefix length, e.g. 10.77.0.2/24"
            ),
            AddrError::NoRoom(v) => write!(
                f,
                "--addr {v:?}: the network needs room for the device and the host (prefix \
                 at most /30, not the network or broadcast address)"
            ),
        }
    }
}

impl std::error::Error for AddrError {}

impl LiveAddr {
    /// Parses `A.B.C.D/PREFIX`.
    pub fn parse(text: &str) -> Result<LiveAddr, AddrError> {
        let malformed = || AddrError::Malformed(text.into());
        let (ip, prefix) = text.split_once('/').ok_or_else(malformed)?;
        let device: Ipv4Addr = ip.parse().map_err(|_| malformed())?;
        let prefix_len: u8 = prefix.parse().map_err(|_| malformed())?;
        if prefix_len > 32 {
            return Err(malformed());
        }
        if prefix_len > 30 {
            return Err(AddrError::NoRoom(text.into()));
        }
        let mask = u32::MAX << (32 - prefix_len);
        let net = u32::from(device) & mask;
        let broadcast = net | !mask;
        let d = u32::from(device);
        if d == net || d == broadcast {
            return Err(AddrError::NoRoom(text.into()));
        }
        // The first usable address that is not the device's.
        let host = if d == net + 1 { net + 2 } else { net + 1 };
        Ok(LiveAddr {
            device,
            prefix_len,
            host: Ipv4Addr::from(host),
        })
    }

    /// The device's address for the firmware core.
    pub fn device_address(&self) -> Ipv4Address {
        self.device
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_takes_the_first_other_address() {
        let a = LiveAddr::parse("10.77.0.2/24").unwrap();
        assert_eq!(a.host, Ipv4Addr::new(10, 77, 0, 1));
        let b = LiveAddr::parse("10.77.0.1/24").unwrap();
        assert_eq!(b.host, Ipv4Addr::new(10, 77, 0, 2));
        assert_eq!(b.prefix_len, 24);
    }

    #[test]
    fn bad_addresses_name_the_flag() {
        for bad in [
            "10.0.0.1",
            "10.0.0.1/33",
            "10.0.0/24",
            "x/24",
            "10.0.0.1/31",
        ] {
            let e = LiveAddr::parse(bad).unwrap_err().to_string();
            assert!(e.starts_with("--addr"), "{bad}: {e}");
        }
        assert!(matches!(
            LiveAddr::parse("10.0.0.0/24"),
            Err(AddrError::NoRoom(_))
        ));
        assert!(matches!(
            LiveAddr::parse("10.0.0.255/24"),
            Err(AddrError::NoRoom(_))
        ));
    }
}
