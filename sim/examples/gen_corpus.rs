//! Writes the seed corpora of the fuzz targets into `fuzz/corpus/` (deterministic: run it again
//! after changing `sim::fuzz` and commit the result).
//!
//! Run: `cargo run -p sim --example gen_corpus`

use std::fs;
use std::path::Path;

use arbitrary::{Arbitrary, Unstructured};
use sim::fuzz::{run_scenario, FuzzScenario, ScenarioOutcome};
use sim::scenario::Injector;

/// Byte offset of `FuzzScenario::injectors` in an input (the fields before it: u64, u8, u8,
/// u16, u8, u16, u8, u16, u8).
const INJECTORS_AT: usize = 19;

/// Sets the injector mask of a scenario input, checking the layout by decoding it.
fn set_injectors(data: &mut [u8], mask: u8) {
    data[INJECTORS_AT] = mask;
    let decoded = FuzzScenario::arbitrary(&mut Unstructured::new(data)).expect("decodes");
    assert_eq!(decoded.injectors, mask, "FuzzScenario layout changed");
}

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let mut state: u64 = 0x5eed_f022;
    let mut bytes = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    };

    // Scenario targets: for each app and first-workload kind of the field scenarios, the first
    // inputs that decode to that combination.
    let apps = ["forum", "multi-client", "server-closes", "echo"];
    let kinds = ["nc", "hold", "stream", "reset"];
    for target in ["scenario", "scenario_legacy"] {
        fs::create_dir_all(root.join(target))?;
    }
    let mut written = std::collections::BTreeMap::new();
    while written.values().sum::<usize>() < apps.len() * kinds.len() * 2 {
        let mut data = bytes(192);
        // Plain timing: no injector (the fuzzer finds them by flipping bits).
        set_injectors(&mut data, 0);
        let Ok(s) = FuzzScenario::arbitrary(&mut Unstructured::new(&data)) else {
            continue;
        };
        let Some(w) = s.workloads.first() else {
            continue;
        };
        let key = (usize::from(s.app % 4), usize::from(w.kind % 4));
        let n = written.entry(key).or_insert(0);
        if *n >= 2 {
            continue;
        }
        *n += 1;
        let name = format!("{}-{}-{}", apps[key.0], kinds[key.1], n);
        fs::write(root.join("scenario").join(&name), &data)?;
        // The legacy target starts from seeds that lose nothing under the legacy rules, so
        // finding the field bug takes a real search.
        let legacy = root.join("scenario_legacy").join(&name);
        if let ScenarioOutcome::Clean(_) = run_scenario(&data, "legacy") {
            fs::write(legacy, &data)?;
        } else if legacy.exists() {
            // Lost under a model that changed since the last run: no longer a clean seed.
            fs::remove_file(legacy)?;
        }
    }

    // One scenario seed per injector, on the forum sketch (fixed target only: under the legacy
    // rules most of them lose at once).
    for (i, injector) in Injector::ALL.into_iter().enumerate() {
        loop {
            let mut data = bytes(192);
            set_injectors(&mut data, 1 << i);
            let Ok(s) = FuzzScenario::arbitrary(&mut Unstructured::new(&data)) else {
                continue;
            };
            if s.app % 4 != 0 || s.workloads.is_empty() {
                continue;
            }
            let name = format!("inject-{injector}");
            fs::write(root.join("scenario").join(name), &data)?;
            break;
        }
    }

    // Parser target: the repository's scenarios, and broken copies of them.
    fs::create_dir_all(root.join("scenario_file"))?;
    let scenarios = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut names: Vec<_> = fs::read_dir(&scenarios)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    names.sort();
    for path in names {
        let text = fs::read(&path)?;
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        fs::write(root.join("scenario_file").join(&stem), &text)?;
        let half = &text[..text.len() / 2];
        fs::write(
            root.join("scenario_file").join(format!("{stem}-truncated")),
            half,
        )?;
    }

    // Packet and API-sequence targets: deterministic random inputs of several sizes.
    for target in ["ingress", "wiring_ops"] {
        fs::create_dir_all(root.join(target))?;
        for (i, n) in [16, 64, 256, 1024, 4096].into_iter().enumerate() {
            fs::write(root.join(target).join(format!("random-{i}")), bytes(n))?;
        }
    }
    println!("corpora written to {}", root.display());
    Ok(())
}
