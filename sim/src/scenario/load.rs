//! Loading a scenario: TOML text, then `--set` changes, then defaults (the policy's device
//! knobs, the link preset under each direction), then the typed [`Scenario`] with every range
//! checked. Errors name the file, line, column and field, or the flag that set the value.

use std::ops::Range;
use std::path::Path;

use firmware_core::DeviceConfig;
use serde::Deserialize;
use toml::de::{DeTable, DeValue};

use super::set::{apply, Set};
use super::{AppName, DeviceSpec, PolicyName, Scenario, ScenarioError};
use crate::link::Preset;

/// Reads a scenario file and resolves it with `sets` applied.
pub fn load(path: &Path, sets: &[Set]) -> Result<Scenario, ScenarioError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
        origin: origin.clone(),
        position: None,
        message: format!("cannot read: {e}"),
    })?;
    parse(&origin, &text, sets)
}

/// Parses scenario text (`origin` names it in errors) and resolves it with `sets` applied.
pub fn parse(origin: &str, text: &str, sets: &[Set]) -> Result<Scenario, ScenarioError> {
    let root = DeTable::parse(text).map_err(|e| ScenarioError {
        origin: origin.into(),
        position: e.span().map(|s| line_col(text, s.start)),
        message: e.message().trim().into(),
    })?;
    let mut lifted = Lifted::default();
    let doc = to_table(root.get_ref(), "", &mut lifted);
    let mut seed = lifted.seed;
    // (`seed` is read as a u64 below, never through the document.)
    for set in sets.iter().filter(|s| s.key != "seed") {
        if let Some(limit) = set.beyond_i64() {
            lifted.clamped.push((set.path(), set.value.clone(), limit));
        }
    }
    let source = Source {
        origin,
        text,
        root: root.get_ref(),
        sets,
        clamped: &lifted.clamped,
    };
    let mut doc = doc.map_err(|(p, m)| source.error(&p, m))?;
    // A preset starts the link over, before the other changes apply to it.
    let presets = sets.iter().filter(|s| s.key == "link.preset");
    for set in presets.chain(sets.iter().filter(|s| s.key != "link.preset")) {
        if set.key == "seed" {
            seed = Some(set.value.parse().map_err(|_| {
                source.at_set(
                    set,
                    format!("seed = {}: expected 0..=18446744073709551615", set.value),
                )
            })?);
            continue;
        }
        if set.key == "link.preset" {
            doc.insert("link".into(), toml::Value::Table(toml::Table::new()));
        }
        apply(&mut doc, set).map_err(|m| source.at_set(set, m))?;
    }
    fill_defaults(&mut doc).map_err(|(p, m)| source.error(&p, m))?;
    check_device_keys(&doc).map_err(|(p, m)| source.error(&p, m))?;
    let mut scenario: Scenario = serde_path_to_error::deserialize(toml::Value::Table(doc))
        .map_err(|e| source.error(&e.path().to_string(), e.inner().message().to_string()))?;
    if let Some(seed) = seed {
        scenario.seed = seed;
    }
    if let Some(invalid) = scenario.invalid() {
        return Err(source.error(&invalid.path, invalid.message));
    }
    // A field without a range of its own took i64's limit: TOML's is the one to quote.
    if let Some((path, written, limit)) = lifted.clamped.first() {
        let side = if *limit < 0 { "smallest" } else { "largest" };
        return Err(source.error(
            path,
            format!("{written} is out of range: the {side} value is {limit}"),
        ));
    }
    Ok(scenario)
}

/// What the file holds beyond a TOML document: the top-level `seed` (a u64 may exceed TOML's
/// i64), and each whole number beyond i64 with its path and as written, which stands in the
/// document at i64's limit on its side so that the field's own range check speaks.
#[derive(Default)]
struct Lifted {
    seed: Option<u64>,
    clamped: Vec<Clamped>,
}

/// A number beyond i64: its path, the number as written, and the limit that stands for it.
type Clamped = (String, String, i64);

/// Where a scenario's values came from, for errors.
struct Source<'a> {
    origin: &'a str,
    text: &'a str,
    root: &'a DeTable<'a>,
    sets: &'a [Set],
    clamped: &'a [Clamped],
}

impl Source<'_> {
    fn at_set(&self, set: &Set, message: String) -> ScenarioError {
        ScenarioError {
            origin: set.origin(),
            position: None,
            message,
        }
    }

    /// An error about the field at `path`: blamed on the last change that set it, else on the
    /// place in the file that holds it (or its nearest table).
    fn error(&self, path: &str, message: String) -> ScenarioError {
        // `link.uplink.X` may come from a shared `link.X`.
        let shared =
            path.replacen("link.uplink.", "link.", 1)
                .replacen("link.downlink.", "link.", 1);
        // The number as written, not the limit that stood for it.
        let message = match self
            .clamped
            .iter()
            .rev()
            .find(|c| c.0 == path || c.0 == shared)
        {
            // As an integer, or as a float field read it.
            Some((_, written, limit)) => [limit.to_string(), (*limit as f64).to_string()]
                .iter()
                .find(|shown| message.contains(shown.as_str()))
                .map_or(message.clone(), |shown| message.replacen(shown, written, 1)),
            None => message,
        };
        let message = if path.is_empty() || path == "." {
            message
        } else {
            format!("{path}: {message}")
        };
        let covers = |set: &Set| {
            let s = set.path();
            let under = |a: &str, b: &str| {
                a == b || a.starts_with(&format!("{b}.")) || a.starts_with(&format!("{b}["))
            };
            // The field itself, a table the change replaced, or a table it changed.
            [path, shared.as_str()]
                .iter()
                .any(|p| !p.is_empty() && (under(p, &s) || under(&s, p)))
        };
        if let Some(set) = self.sets.iter().rev().find(|s| covers(s)) {
            return self.at_set(set, message);
        }
        // The field itself, else the nearest table that holds it.
        let mut position = None;
        for candidate in [path, shared.as_str()] {
            position = position.or_else(|| lookup(self.root, candidate));
        }
        for candidate in [path, shared.as_str()] {
            let mut p = parent(candidate);
            while position.is_none() && !p.is_empty() {
                position = lookup(self.root, p);
                p = parent(p);
            }
        }
        let position = position.map(|span| line_col(self.text, span.start));
        ScenarioError {
            origin: self.origin.into(),
            position,
            message,
        }
    }
}

/// The path without its last segment (`peer[2].count` -> `peer[2]` -> `peer`).
fn parent(path: &str) -> &str {
    match path.rfind(['.', '[']) {
        Some(i) => &path[..i],
        None => "",
    }
}

/// The span of the key (or array element) at exactly `path` in the file.
fn lookup(table: &DeTable<'_>, path: &str) -> Option<Range<usize>> {
    let (head, rest) = match path.find(['.', '[']) {
        Some(i) => (&path[..i], &path[i..]),
        None => (path, ""),
    };
    let (key, value) = table.iter().find(|(k, _)| k.get_ref() == head)?;
    let mut value = value;
    let mut rest = rest;
    let mut span = key.span();
    // Array indices after the key: `[3]`.
    while let Some(stripped) = rest.strip_prefix('[') {
        let close = stripped.find(']')?;
        let index: usize = stripped[..close].parse().ok()?;
        value = match value.get_ref() {
            DeValue::Array(a) => a.get(index)?,
            _ => return None,
        };
        span = value.span();
        rest = &stripped[close + 1..];
    }
    match rest.strip_prefix('.') {
        None => Some(span),
        Some(inner) => match value.get_ref() {
            DeValue::Table(t) => lookup(t, inner),
            _ => None,
        },
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

type PathError = (String, String);

/// The file as a document; the top-level `seed` and numbers beyond i64 go to `lifted`.
fn to_table(
    table: &DeTable<'_>,
    path: &str,
    lifted: &mut Lifted,
) -> Result<toml::Table, PathError> {
    let mut out = toml::Table::new();
    for (key, value) in table.iter() {
        let key = key.get_ref().to_string();
        let here = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        if here == "seed" {
            if let DeValue::Integer(i) = value.get_ref() {
                let parsed = u64::from_str_radix(i.as_str(), i.radix()).map_err(|_| {
                    (
                        here.clone(),
                        format!("{i}: expected 0..=18446744073709551615"),
                    )
                })?;
                lifted.seed = Some(parsed);
                continue;
            }
        }
        out.insert(key, to_value(value.get_ref(), &here, lifted)?);
    }
    Ok(out)
}

fn to_value(
    value: &DeValue<'_>,
    path: &str,
    lifted: &mut Lifted,
) -> Result<toml::Value, PathError> {
    Ok(match value {
        DeValue::String(s) => toml::Value::String(s.to_string()),
        DeValue::Integer(i) => toml::Value::Integer(
            i64::from_str_radix(i.as_str(), i.radix()).unwrap_or_else(|_| {
                // Valid TOML digits that do not fit: beyond i64 on the sign's side.
                let limit = if i.as_str().starts_with('-') {
                    i64::MIN
                } else {
                    i64::MAX
                };
                lifted.clamped.push((path.into(), i.to_string(), limit));
                limit
            }),
        ),
        DeValue::Float(f) => toml::Value::Float(
            f.as_str()
                .parse()
                .map_err(|_| (path.to_string(), format!("{f} is not a number")))?,
        ),
        DeValue::Boolean(b) => toml::Value::Boolean(*b),
        DeValue::Datetime(d) => toml::Value::Datetime(*d),
        DeValue::Array(a) => {
            let mut out = Vec::with_capacity(a.len());
            for (i, v) in a.iter().enumerate() {
                out.push(to_value(v.get_ref(), &format!("{path}[{i}]"), lifted)?);
            }
            toml::Value::Array(out)
        }
        DeValue::Table(t) => toml::Value::Table(to_table(t, path, lifted)?),
    })
}

/// A typed value as a document table.
fn table_of<T: serde::Serialize>(value: &T) -> toml::Table {
    toml::Table::try_from(value).unwrap_or_default()
}

/// Fills what the file left out and depends on other fields: the policy's device knobs, and
/// the link's preset values under each direction, shared keys above direction keys.
fn fill_defaults(doc: &mut toml::Table) -> Result<(), PathError> {
    if let Some(toml::Value::Table(device)) = doc.get_mut("device") {
        let policy = device
            .get("policy")
            .and_then(|p| PolicyName::deserialize(p.clone()).ok())
            .unwrap_or_default();
        for (k, v) in table_of(&policy.preset().device) {
            device.entry(k).or_insert(v);
        }
    }
    let mut link = match doc.remove("link") {
        Some(toml::Value::Table(t)) => t,
        Some(_) => return Err(("link".into(), "expected a table".into())),
        None => toml::Table::new(),
    };
    let preset_value = link
        .remove("preset")
        .unwrap_or_else(|| toml::Value::String("ideal".into()));
    let preset = Preset::deserialize(preset_value.clone())
        .map_err(|e| ("link.preset".to_string(), e.message().to_string()))?;
    let mut out = toml::Table::new();
    for (dir, downlink) in [("uplink", false), ("downlink", true)] {
        let mut params = table_of(&preset.params(downlink));
        for (k, v) in link
            .iter()
            .filter(|(k, _)| *k != "uplink" && *k != "downlink")
        {
            params.insert(k.clone(), v.clone());
        }
        match link.get(dir) {
            Some(toml::Value::Table(own)) => params.extend(own.clone()),
            Some(_) => return Err((format!("link.{dir}"), "expected a table".into())),
            None => {}
        }
        out.insert(dir.into(), toml::Value::Table(params));
    }
    out.insert("preset".into(), preset_value);
    doc.insert("link".into(), toml::Value::Table(out));
    Ok(())
}

/// `[device]` holds the device knobs flattened beside its own fields, which serde cannot check
/// for unknown keys: checked here, and the knobs' ranges with their paths.
fn check_device_keys(doc: &toml::Table) -> Result<(), PathError> {
    let Some(toml::Value::Table(device)) = doc.get("device") else {
        return Ok(());
    };
    let known = table_of(&DeviceSpec::new(AppName::Forum, PolicyName::Legacy));
    if let Some(unknown) = device.keys().find(|k| !known.contains_key(*k)) {
        return Err((
            format!("device.{unknown}"),
            format!("unknown field `{unknown}`"),
        ));
    }
    let knobs = table_of(&DeviceConfig::default());
    let mine: toml::Table = device
        .iter()
        .filter(|(k, _)| knobs.contains_key(*k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    serde_path_to_error::deserialize::<_, DeviceConfig>(toml::Value::Table(mine))
        .map(|_| ())
        .map_err(|e| {
            (
                format!("device.{}", e.path()),
                e.inner().message().to_string(),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::SetFlag;

    /// The turmoil tick lines up with tokio's millisecond timers: the exact tick rounds down
    /// to one that does, and a tick set by hand that does not is an error naming the field.
    #[test]
    fn turmoil_ticks_line_up_with_milliseconds() {
        use crate::scenario::tick_is_aligned;
        for preset in ["ideal", "wlan-good", "wlan-busy", "wlan-bad"] {
            let text = format!("name = \"t\"\n[device]\napp = \"forum\"\n[link]\npreset = \"{preset}\"\n[[peer]]\nkind = \"nc\"\n");
            let s = parse("t.toml", &text, &[]).unwrap();
            let tick = s.turmoil_tick();
            assert!(tick_is_aligned(tick.tick_us), "{preset}: {tick:?}");
            assert_eq!(tick.exact, preset != "ideal", "{preset}: {tick:?}");
            assert!(tick.tick_us <= s.link.uplink.min_one_way_delay_us() || !tick.exact);
        }
        let text = "name = \"t\"\nturmoil_tick_us = 1500\n[device]\napp = \"forum\"\n[[peer]]\nkind = \"nc\"\n";
        let err = parse("t.toml", text, &[]).unwrap_err().to_string();
        assert!(
            err.contains("turmoil_tick_us") && err.contains("1500"),
            "{err}"
        );
    }

    const MINIMAL: &str = "name = \"t\"\n[device]\napp = \"forum\"\n[[peer]]\ncount = 2\n";

    fn sets(list: &[&str]) -> Vec<Set> {
        list.iter()
            .map(|s| Set::parse(SetFlag::Set, s).unwrap())
            .collect()
    }

    #[test]
    fn minimal_scenario_resolves_with_defaults() {
        let c = parse("t.toml", MINIMAL, &[]).unwrap();
        assert_eq!(c.policy(), firmware_core::Policy::LEGACY);
        assert_eq!(c.link.uplink, crate::link::LinkParams::IDEAL);
        assert_eq!(c.peer[0].count, 2);
        assert_eq!(c.device.stack, DeviceConfig::PHOTON);
        let fixed = parse("t.toml", MINIMAL, &sets(&["device.policy=\"fixed\""])).unwrap();
        assert_eq!(fixed.device.stack.pool_size, 10, "the fixed policy's pool");
    }

    #[test]
    fn stack_presets_bring_their_device_defaults_and_rules_switch_one_rule() {
        let names: Vec<&str> = PolicyName::ALL.iter().map(|p| p.name()).collect();
        assert_eq!(names, firmware_core::Policy::NAMES.to_vec());
        let esp = parse(
            "t.toml",
            MINIMAL,
            &sets(&["device.policy=\"esp8266-arduino-2.6\""]),
        );
        let esp = esp.unwrap();
        assert_eq!(
            (esp.device.stack.pool_size, esp.device.stack.backlog),
            (5, 5)
        );
        assert!(esp.policy().fin_answered_with_rst);
        assert_eq!(esp.policy_label(), "esp8266-arduino-2.6");
        let text = MINIMAL.replace(
            "[[peer]]",
            "[device.rules]\nfin_past_hole_accepted = true\n[[peer]]",
        );
        let c = parse("t.toml", &text, &[]).unwrap();
        assert_eq!(
            c.policy(),
            firmware_core::Policy {
                fin_past_hole_accepted: true,
                ..firmware_core::Policy::LEGACY
            }
        );
        assert_eq!(c.policy_label(), "legacy+rules");
        assert_eq!(parse("saved.toml", &c.to_toml(), &[]).unwrap(), c);
    }

    #[test]
    fn errors_name_file_line_and_field() {
        for (text, line, needle) in [
            (
                "name = \"t\"\n[device]\napp = \"forum\"\nloop_perod_us = 5\n[[peer]]\n",
                4,
                "loop_perod_us",
            ),
            (
                "name = \"t\"\n[device]\napp = \"forum\"\npool_size = 0\n[[peer]]\n",
                4,
                "device.pool_size: 0 is out of range",
            ),
            (
                "name = \"t\"\n[device]\napp = \"forum\"\nloop_period_us = 0\n[[peer]]\n",
                4,
                "device.loop_period_us",
            ),
            (
                "name = \"t\"\n[device]\napp = \"forum\"\n[link]\nloss_p = 2.0\n[[peer]]\n",
                5,
                "loss_p: 2 is out of range",
            ),
            (
                "name = \"t\"\n[device]\napp = \"forum\"\n[link]\npreset = \"5g\"\n[[peer]]\n",
                5,
                "link.preset",
            ),
            (
                "name = \"t\"\n[device]\napp = \"forum\"\n[[peer]]\n[[peer]]\ncont = 1\n",
                6,
                "peer[1].cont",
            ),
            (
                "name = \"t\"\nmax_duration_ms = 0\n[device]\napp = \"forum\"\n[[peer]]\n",
                2,
                "max_duration_ms",
            ),
            (
                "name = \"t\"\n[device]\napp = \"toaster\"\n[[peer]]\n",
                3,
                "toaster",
            ),
            (
                "name = \"t\"\n[device]\napp = \"forum\"\n[device.rules]\nfin_past_hole = true\n[[peer]]\n",
                5,
                "device.rules.fin_past_hole: unknown field",
            ),
            (
                "name = \"t\"\n[device]\napp = \"forum\"\n[device.rules]\neof_rule = \"never\"\n[[peer]]\n",
                5,
                "device.rules.eof_rule: unknown variant `never`",
            ),
            (
                "name = \"t\"\n[device]\napp = \"forum\"\npolicy = \"esp32\"\n[[peer]]\n",
                4,
                "device.policy: unknown variant `esp32`",
            ),
        ] {
            let e = parse("s.toml", text, &[]).unwrap_err();
            assert_eq!(e.origin, "s.toml", "{e}");
            assert_eq!(e.position.map(|p| p.0), Some(line), "{e}");
            assert!(e.message.contains(needle), "{e} should mention {needle}");
        }
    }

    #[test]
    fn set_errors_name_the_set() {
        for (set, needle) in [
            ("link.loss_p=2", "loss_p: 2 is out of range"),
            ("drain_ms=18446744073709551615", "out of range"),
            ("device.bogus=1", "bogus"),
            ("peer.3.count=1", "entries"),
        ] {
            let e = parse("t.toml", MINIMAL, &sets(&[set])).unwrap_err();
            assert!(e.origin.starts_with("--set"), "{e}");
            assert!(e.origin.contains(set), "{e}");
            assert!(e.message.contains(needle), "{e} should mention {needle}");
        }
        let vary = Set::parse(SetFlag::Vary, "device.loop_period_us=0").unwrap();
        let e = parse("t.toml", MINIMAL, &[vary]).unwrap_err();
        assert!(e.to_string().contains("device.loop_period_us"), "{e}");
    }

    #[test]
    fn seeds_span_all_of_u64_in_files_and_sets() {
        let text =
            "name = \"t\"\nseed = 18446744073709551615\n[device]\napp = \"forum\"\n[[peer]]\n";
        assert_eq!(parse("t.toml", text, &[]).unwrap().seed, u64::MAX);
        let with_sets = sets(&["device.policy=\"fixed\"", "seed=18446744073709551614"]);
        assert_eq!(
            parse("t.toml", text, &with_sets).unwrap().seed,
            u64::MAX - 1
        );
        let back = parse(
            "t.toml",
            &parse("t.toml", text, &[]).unwrap().to_toml(),
            &[],
        )
        .unwrap();
        assert_eq!(back.seed, u64::MAX);
    }

    #[test]
    fn a_preset_starts_the_link_over_and_shared_keys_apply_to_both() {
        let text = "name = \"t\"\n[device]\napp = \"forum\"\n[link]\npreset = \"wlan-good\"\nloss_p = 0.2\n[link.downlink]\ndelay_us = 9\n[[peer]]\n";
        let c = parse("t.toml", text, &[]).unwrap();
        assert_eq!((c.link.uplink.loss_p, c.link.downlink.loss_p), (0.2, 0.2));
        assert_eq!(c.link.downlink.delay_us, 9);
        assert_eq!(
            c.link.uplink.delay_us,
            Preset::WlanGood.params(false).delay_us
        );
        let bad = Set::flag(SetFlag::Preset, "wlan-bad");
        let c = parse("t.toml", text, &[bad]).unwrap();
        assert_eq!(c.link, super::super::LinkSpec::preset(Preset::WlanBad));
    }

    #[test]
    fn the_record_loads_back_to_the_same_value() {
        for name in ["forum", "multi-client", "stream", "device-restart"] {
            let path = format!("{}/../scenarios/{name}.toml", env!("CARGO_MANIFEST_DIR"));
            let c = load(Path::new(&path), &[]).unwrap();
            assert_eq!(parse("saved.toml", &c.to_toml(), &[]).unwrap(), c, "{name}");
        }
    }
}
