//! Seed splitting: every random draw of a run comes from the scenario's one seed, split per
//! component by name, so components draw independently and adding one does not shift the others.

use sha2::{Digest, Sha256};

/// The seed of component `name` in a run seeded with `seed`.
pub fn split_seed(seed: u64, name: &str) -> u64 {
    let digest = Sha256::new()
        .chain_update(seed.to_le_bytes())
        .chain_update(name.as_bytes())
        .finalize();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(bytes)
}

/// The seed of component `name` in the device's `boot`-th life: a rebooted device (turmoil
/// `bounce`) draws fresh timing, while boot 0 keeps the plain names.
pub(crate) fn boot_seed(seed: u64, name: &str, boot: u32) -> u64 {
    if boot == 0 {
        split_seed(seed, name)
    } else {
        split_seed(seed, &format!("{name}.boot{boot}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_and_boots_draw_apart() {
        assert_ne!(split_seed(1, "a"), split_seed(1, "b"));
        assert_ne!(split_seed(1, "a"), split_seed(2, "a"));
        assert_eq!(boot_seed(7, "x", 0), split_seed(7, "x"));
        assert_eq!(boot_seed(7, "x", 2), split_seed(7, "x.boot2"));
    }
}
