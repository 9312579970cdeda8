//! Gatehouse's API contract: what a compiled config promises clients. Sits after the config flow
//! (it reads a validated `gatehouse_config::Config`) and feeds the CLI (`diff`, `openapi`, `check`
//! warnings), the developer portal and, optionally, request validation on the request path.

use serde::Serialize;
use std::fmt;

mod diff;
mod limits;
mod oas_diff;
mod out;
mod policies;
mod rules;
mod schema;
mod table;
mod validator;
mod warnings;

pub use validator::RequestValidator;
pub use warnings::{warnings, Warning};
/// Why a contract could not be produced.
#[derive(Debug, Clone)]
pub struct ContractError(pub String);

impl fmt::Display for ContractError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ContractError {}

/// How a change affects existing clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Class {
    /// An existing client may fail.
    Breaking,
    /// Existing clients keep working.
    NonBreaking,
    /// Worth knowing, neither.
    Informational,
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, so that `{:<13}` lines up columns.
        f.pad(match self {
            Class::Breaking => "breaking",
            Class::NonBreaking => "non-breaking",
            Class::Informational => "informational",
        })
    }
}

/// One change to the public API.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// Classification.
    pub class: Class,
    /// Kind, such as `operation-removed`.
    pub kind: &'static str,
    /// The operation, `GET api.example.com/v1/tasks`.
    pub operation: String,
    /// One-line reason.
    pub reason: String,
    /// `file:line` in the new config, or in the old one for removals.
    pub location: Option<String>,
}

/// The public API change between two configs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Changes, breaking first.
    pub changes: Vec<Change>,
}

/// The gateway's public API as one OpenAPI 3.1 document, as JSON.
pub fn openapi_document(
    config: &gatehouse_config::Config,
) -> Result<serde_json::Value, ContractError> {
    out::document(config)
}

/// The public API change between two compiled configs.
pub fn diff(old: &gatehouse_config::Config, new: &gatehouse_config::Config) -> Report {
    diff::diff(old, new)
}

impl Report {
    /// Whether any change is breaking.
    pub fn has_breaking(&self) -> bool {
        self.changes.iter().any(|c| c.class == Class::Breaking)
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<13} {:<24} {}: {}",
            self.class, self.kind, self.operation, self.reason
        )?;
        if let Some(at) = &self.location {
            write!(f, " ({at})")?;
        }
        Ok(())
    }
}
