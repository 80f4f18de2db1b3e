//! Range-checked deserialisation of configuration numbers (`serde` feature).
//!
//! Use as `#[serde(deserialize_with = "crate::range::usize_in::<_, 1, 64>")]`: the value must lie
//! in `LO..=HI`, else deserialisation fails with a message naming the range.

use core::fmt::Display;

use serde::de::{Deserialize, Deserializer, Error};

/// Deserialises a `usize` in `LO..=HI`.
pub fn usize_in<'de, D, const LO: usize, const HI: usize>(d: D) -> Result<usize, D::Error>
where
    D: Deserializer<'de>,
{
    in_range(usize::deserialize(d)?, LO, HI)
}

/// Deserialises a `u64` in `LO..=HI`.
pub fn u64_in<'de, D, const LO: u64, const HI: u64>(d: D) -> Result<u64, D::Error>
where
    D: Deserializer<'de>,
{
    in_range(u64::deserialize(d)?, LO, HI)
}

/// Deserialises a `u32` in `LO..=HI`.
pub fn u32_in<'de, D, const LO: u32, const HI: u32>(d: D) -> Result<u32, D::Error>
where
    D: Deserializer<'de>,
{
    in_range(u32::deserialize(d)?, LO, HI)
}

/// Deserialises a `u16` in `LO..=HI`.
pub fn u16_in<'de, D, const LO: u16, const HI: u16>(d: D) -> Result<u16, D::Error>
where
    D: Deserializer<'de>,
{
    in_range(u16::deserialize(d)?, LO, HI)
}

fn in_range<T: PartialOrd + Display, E: Error>(value: T, lo: T, hi: T) -> Result<T, E> {
    if lo <= value && value <= hi {
        Ok(value)
    } else {
        Err(E::custom(format_args!(
            "{value} is out of range: expected {lo}..={hi}"
        )))
    }
}
