//! `--seeds`: which seeds a sweep runs.

/// The most seeds one sweep runs (a longer list is an error, not an allocation).
pub const MAX_SEEDS: u64 = 10_000_000;

/// Why a `--seeds` list is not one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeedsError {
    /// Not `N`, `A..B` or `a,b,c`.
    Malformed(String),
    /// No seed at all.
    Empty(String),
    /// More than [`MAX_SEEDS`].
    TooMany(String),
}

impl std::fmt::Display for SeedsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SeedsError::Malformed(t) => write!(f, "--seeds {t:?}: expected N, A..B or a,b,c"),
            SeedsError::Empty(t) => write!(f, "--seeds {t:?}: a sweep runs at least one seed"),
            SeedsError::TooMany(t) => {
                write!(f, "--seeds {t:?}: a sweep runs at most {MAX_SEEDS} seeds")
            }
        }
    }
}

impl std::error::Error for SeedsError {}

/// Parses `A..B` (inclusive), `N` (1..=N) or `a,b,c`.
pub fn parse_seeds(text: &str) -> Result<Vec<u64>, SeedsError> {
    let bad = || SeedsError::Malformed(text.into());
    if let Some((a, b)) = text.split_once("..") {
        let a: u64 = a.trim().parse().map_err(|_| bad())?;
        let b: u64 = b
            .trim()
            .trim_start_matches('=')
            .parse()
            .map_err(|_| bad())?;
        if a > b {
            return Err(bad());
        }
        if b - a >= MAX_SEEDS {
            return Err(SeedsError::TooMany(text.into()));
        }
        return Ok((a..=b).collect());
    }
    if text.contains(',') {
        return text
            .split(',')
            .map(|s| s.trim().parse().map_err(|_| bad()))
            .collect();
    }
    let n: u64 = text.trim().parse().map_err(|_| bad())?;
    if n == 0 {
        return Err(SeedsError::Empty(text.into()));
    }
    if n > MAX_SEEDS {
        return Err(SeedsError::TooMany(text.into()));
    }
    Ok((1..=n).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_lists_parse() {
        assert_eq!(parse_seeds("3").unwrap(), vec![1, 2, 3]);
        assert_eq!(parse_seeds("5..7").unwrap(), vec![5, 6, 7]);
        assert_eq!(parse_seeds("9,2").unwrap(), vec![9, 2]);
        assert!(parse_seeds("7..5").is_err());
        assert!(parse_seeds("x").is_err());
        assert_eq!(
            parse_seeds("1..18446744073709551615"),
            Err(SeedsError::TooMany("1..18446744073709551615".into())),
            "a range too long to run is an error, not an allocation"
        );
        assert!(
            parse_seeds("0").is_err(),
            "a sweep of no seed tests nothing"
        );
    }
}
