//! Gatehouse configuration: the config flow from files to a validated model.
//!
//! `load_path` / `load_sources` read manifests (`yaml` -> `de` -> `raw`), validate every document
//! (`validate`), check the route table as a whole (`rules`) and return either the model or every
//! error found, each with file, line, column and field path.

// Enum variants are spelled as the manifests spell them (`HTTP`, `HTTPS`, `GRPC`).
#![allow(clippy::upper_case_acronyms)]

pub mod error;
pub mod model;
pub mod openapi;
pub mod portal;
pub mod units;
pub mod yaml;

mod de;
mod loader;
mod manifests;
mod raw;
mod rules;
mod validate;

pub use error::{ConfigError, ConfigErrors};
pub use loader::{
    collect_files, is_manifest_file, load_path, load_sources, SourceFile, API_VERSION,
};
pub use model::*;
pub use portal::{Portal, PortalMount};
pub use validate::{parse_endpoints_file, parse_sha256};

/// The quickstart configuration `gatehouse run` serves when given no `-c`.
pub const QUICKSTART: &str = include_str!("../quickstart.yaml");
