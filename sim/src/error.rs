//! The errors a user of fwsim can cause: a scenario that is not valid, or a run that could not
//! be carried out. A run that finds silent loss is not an error: its report says so.

use std::fmt;

use crate::run::RunError;
use crate::scenario::ScenarioError;

/// Why fwsim could not give a verdict.
#[derive(Debug)]
pub enum Error {
    /// The scenario (file, `--set`, or value built in code) is not valid.
    Scenario(ScenarioError),
    /// The run could not be carried out.
    Run(RunError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Scenario(e) => e.fmt(f),
            Error::Run(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Scenario(e) => Some(e),
            Error::Run(e) => Some(e),
        }
    }
}

impl From<ScenarioError> for Error {
    fn from(e: ScenarioError) -> Self {
        Error::Scenario(e)
    }
}

impl From<RunError> for Error {
    fn from(e: RunError) -> Self {
        Error::Run(e)
    }
}
