//! Range-checked deserialisation of configuration numbers (`serde` feature).
//!
//! Use as `#[serde(deserialize_with = "crate::range::usize_in::<_, 1, 64>")]`: the value must lie
//! in `LO..=HI`, else deserialisation fails with a message naming the range, whatever the
//! number was written as (a negative number, a float such as `1e19`).

use core::fmt;

use serde::de::{Deserializer, Error, Unexpected, Visitor};

/// Deserialises a `usize` in `LO..=HI`.
pub fn usize_in<'de, D, const LO: usize, const HI: usize>(d: D) -> Result<usize, D::Error>
where
    D: Deserializer<'de>,
{
    whole_in(d, LO as u64, HI as u64)
}

/// Deserialises a `u64` in `LO..=HI`.
pub fn u64_in<'de, D, const LO: u64, const HI: u64>(d: D) -> Result<u64, D::Error>
where
    D: Deserializer<'de>,
{
    whole_in(d, LO, HI)
}

/// Deserialises a `u32` in `LO..=HI`.
pub fn u32_in<'de, D, const LO: u32, const HI: u32>(d: D) -> Result<u32, D::Error>
where
    D: Deserializer<'de>,
{
    whole_in(d, u64::from(LO), u64::from(HI))
}

/// Deserialises a `u16` in `LO..=HI`.
pub fn u16_in<'de, D, const LO: u16, const HI: u16>(d: D) -> Result<u16, D::Error>
where
    D: Deserializer<'de>,
{
    whole_in(d, u64::from(LO), u64::from(HI))
}

/// A whole number in `lo..=hi`, as `T` (which holds `hi`).
fn whole_in<'de, D, T>(d: D, lo: u64, hi: u64) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    let value = d.deserialize_u64(WholeIn { lo, hi })?;
    T::try_from(value).map_err(|_| D::Error::custom(OutOfRange(value, lo, hi)))
}

/// "`value` is out of range: expected `lo..=hi`".
struct OutOfRange<V>(V, u64, u64);

impl<V: fmt::Display> fmt::Display for OutOfRange<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is out of range: expected {}..={}",
            self.0, self.1, self.2
        )
    }
}

/// Takes any number and checks it against the range, so that a negative or too large one is
/// told the field's range rather than the type's.
struct WholeIn {
    lo: u64,
    hi: u64,
}

impl Visitor<'_> for WholeIn {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a whole number in {}..={}", self.lo, self.hi)
    }

    fn visit_u64<E: Error>(self, v: u64) -> Result<u64, E> {
        if (self.lo..=self.hi).contains(&v) {
            Ok(v)
        } else {
            Err(E::custom(OutOfRange(v, self.lo, self.hi)))
        }
    }

    fn visit_i64<E: Error>(self, v: i64) -> Result<u64, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(E::custom(OutOfRange(v, self.lo, self.hi))),
        }
    }

    fn visit_f64<E: Error>(self, v: f64) -> Result<u64, E> {
        // Whole or not, a float outside the range is first of all out of range.
        if v.is_nan() || (self.lo as f64..=self.hi as f64).contains(&v) {
            Err(E::invalid_type(Unexpected::Float(v), &self))
        } else {
            Err(E::custom(OutOfRange(v, self.lo, self.hi)))
        }
    }
}
