//! Command-line changes to a scenario: `--set KEY=VALUE` and the flags that stand for one
//! (`--policy`, `--preset`, `--backend`, `--inject`, a `--vary` value). Each remembers its flag,
//! so errors name it and the replay command writes it back the way it was given.

use std::fmt;

use super::ScenarioError;

/// The flag a change came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SetFlag {
    /// `--set KEY=VALUE` (`KEY+=VALUE` appends to a list).
    Set,
    /// One value of `fwsim sweep --vary KEY=V1,V2,...`.
    Vary,
    /// `--policy NAME` (`device.policy`).
    Policy,
    /// `--preset NAME` (`link.preset`; the link starts over from the preset).
    Preset,
    /// `--backend NAME` (`backend`).
    Backend,
    /// `--inject NAME` (`inject+=NAME`).
    Inject,
}

/// One change to a scenario.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Set {
    /// Where it came from.
    pub flag: SetFlag,
    /// The field's path: `device.loop_period_us`, `peer.0.count`, `link.downlink.delay_us`.
    pub key: String,
    /// The value as written (read as TOML: `3`, `0.5`, `"x"`, `true`; anything else is a string).
    pub value: String,
    /// `KEY+=VALUE`: append to a list.
    pub append: bool,
}

impl Set {
    /// Parses `KEY=VALUE` or `KEY+=VALUE` given with `flag`.
    pub fn parse(flag: SetFlag, assignment: &str) -> Result<Set, ScenarioError> {
        let err = |message: &str| ScenarioError {
            origin: match flag {
                SetFlag::Vary => format!("--vary {assignment}"),
                _ => format!("--set {assignment}"),
            },
            position: None,
            message: message.into(),
        };
        let (key, value) = assignment
            .split_once('=')
            .ok_or_else(|| err("expected KEY=VALUE"))?;
        let (key, append) = match key.trim().strip_suffix('+') {
            Some(k) => (k.trim(), true),
            None => (key.trim(), false),
        };
        if key.is_empty() || key.split('.').any(str::is_empty) {
            return Err(err("empty key segment"));
        }
        Ok(Set {
            flag,
            key: key.into(),
            value: value.trim().into(),
            append,
        })
    }

    /// A flag that stands for one field: `--policy fixed` is `device.policy = "fixed"`.
    pub fn flag(flag: SetFlag, value: &str) -> Set {
        let (key, append) = match flag {
            SetFlag::Policy => ("device.policy", false),
            SetFlag::Preset => ("link.preset", false),
            SetFlag::Backend => ("backend", false),
            SetFlag::Inject => ("inject", true),
            SetFlag::Set | SetFlag::Vary => ("", false),
        };
        Set {
            flag,
            key: key.into(),
            value: value.into(),
            append,
        }
    }

    /// The key's segments as the scenario's paths write them (`peer.0.count` is `peer[0].count`).
    pub(crate) fn path(&self) -> String {
        let mut path = String::new();
        for part in self.key.split('.') {
            if part.parse::<usize>().is_ok() {
                path.push_str(&format!("[{part}]"));
            } else {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(part);
            }
        }
        path
    }

    /// The value as TOML, or a string when it is not TOML (`fin-before-drain`).
    pub(crate) fn toml_value(&self) -> Result<toml::Value, String> {
        let v = &self.value;
        if let Some(value) = toml::from_str::<toml::Table>(&format!("v = {v}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
        {
            return Ok(value);
        }
        // A number TOML cannot hold (beyond i64) is a number, not a string: see `beyond_i64`.
        if let Some(limit) = self.beyond_i64() {
            return Ok(toml::Value::Integer(limit));
        }
        Ok(toml::Value::String(v.clone()))
    }

    /// For a whole number beyond TOML's i64: the limit on its side, which stands for it in
    /// the document so that the field's own range check speaks (the loader puts the written
    /// number back in the message). `None` for any other value.
    pub(crate) fn beyond_i64(&self) -> Option<i64> {
        let v = &self.value;
        let digits = v.strip_prefix(['-', '+']).unwrap_or(v).replace('_', "");
        let all_digits = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
        let beyond = digits
            .parse::<u128>()
            .map_or(true, |n| n > i64::MAX as u128);
        (all_digits && beyond).then_some(if v.starts_with('-') {
            i64::MIN
        } else {
            i64::MAX
        })
    }
}

impl Set {
    /// Where the change came from, for errors (`--vary KEY=VALUE` for a sweep's value).
    pub fn origin(&self) -> String {
        match self.flag {
            SetFlag::Vary => format!("--vary {}={}", self.key, self.value),
            _ => self.to_string(),
        }
    }
}

impl fmt::Display for Set {
    /// The flag as a user writes it (`--set 'peer.0.count=5'`, `--policy fixed`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = self.value.trim_matches('"');
        match self.flag {
            SetFlag::Policy => write!(f, "--policy {value}"),
            SetFlag::Preset => write!(f, "--preset {value}"),
            SetFlag::Backend => write!(f, "--backend {value}"),
            SetFlag::Inject => write!(f, "--inject {value}"),
            SetFlag::Set | SetFlag::Vary => {
                let op = if self.append { "+=" } else { "=" };
                write!(f, "--set '{}{op}{}'", self.key, self.value)
            }
        }
    }
}

/// Applies `set` to a document: creates missing tables, indexes arrays (`peer.0.count`).
pub(crate) fn apply(doc: &mut toml::Table, set: &Set) -> Result<(), String> {
    let value = set.toml_value()?;
    let parts: Vec<&str> = set.key.split('.').collect();
    let (last, parents) = parts.split_last().ok_or("empty key")?;
    let mut table = doc;
    let mut i = 0;
    while i < parents.len() {
        let part = parents[i];
        let entry = table
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = match entry {
            toml::Value::Table(t) => t,
            toml::Value::Array(a) => {
                i += 1;
                let index: usize = parents
                    .get(i)
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| format!("`{part}` is a list: use {part}.N.{last}"))?;
                let n = a.len();
                match a.get_mut(index) {
                    Some(toml::Value::Table(t)) => t,
                    _ => return Err(format!("`{part}` has {n} entries (0..{n})")),
                }
            }
            _ => return Err(format!("`{part}` is not a table")),
        };
        i += 1;
    }
    if !set.append {
        table.insert(last.to_string(), value);
        return Ok(());
    }
    match table
        .entry(last.to_string())
        .or_insert_with(|| toml::Value::Array(Vec::new()))
    {
        toml::Value::Array(a) => {
            a.push(value);
            Ok(())
        }
        _ => Err(format!("`{}` is not a list", set.key)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_parse_apply_and_print_back() {
        let s = Set::parse(SetFlag::Set, "peer.0.count=5").unwrap();
        assert_eq!(s.path(), "peer[0].count");
        assert_eq!(s.to_string(), "--set 'peer.0.count=5'");
        assert_eq!(
            Set::flag(SetFlag::Policy, "fixed").to_string(),
            "--policy fixed"
        );
        assert!(Set::parse(SetFlag::Set, "novalue").is_err());
        assert!(Set::parse(SetFlag::Set, "a..b=1").is_err());
        let mut doc: toml::Table = toml::from_str("[[peer]]\ncount = 1\n").unwrap();
        apply(&mut doc, &s).unwrap();
        assert_eq!(doc["peer"][0]["count"].as_integer(), Some(5));
        let bad = Set::parse(SetFlag::Set, "peer.3.count=1").unwrap();
        assert!(apply(&mut doc, &bad).unwrap_err().contains("1 entries"));
        let huge = Set::parse(SetFlag::Set, "drain_ms=18446744073709551615").unwrap();
        assert_eq!(huge.beyond_i64(), Some(i64::MAX));
        apply(&mut doc, &huge).unwrap();
        assert_eq!(doc["drain_ms"].as_integer(), Some(i64::MAX));
        assert_eq!(s.beyond_i64(), None);
        let inj = Set::flag(SetFlag::Inject, "syn-burst");
        apply(&mut doc, &inj).unwrap();
        assert_eq!(doc["inject"][0].as_str(), Some("syn-burst"));
    }
}
