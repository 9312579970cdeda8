//! Config flow, the validated model (release by routing): how a rule's traffic is split stickily,
//! which requests are overridden to a named backend, and which are mirrored to a shadow.

use super::{KeyValueMatch, ObjectId};
use serde::Serialize;

/// A rule's release settings; all empty on a rule that uses none of them.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Release {
    /// Keeps one user on one backend of the split while the weights allow it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sticky_split: Option<StickySplit>,
    /// Checked before the split, in order; the first that matches names the backend.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<Override>,
    /// Copies of some requests sent to a shadow backend.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirror: Option<Box<Mirror>>,
}

impl Release {
    /// Whether the rule uses none of the release settings.
    pub fn is_empty(&self) -> bool {
        self.sticky_split.is_none() && self.overrides.is_empty() && self.mirror.is_none()
    }
}

/// Where the user's key for a sticky split comes from (`stickySplit`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum StickySplit {
    /// A cookie Gatehouse sets when the request has none.
    Cookie(String),
    /// A request header (lowercase) whose value is hashed.
    Header(String),
}

/// One override (`overrides[]`): requests meeting every condition go to `backend`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Override {
    /// Header conditions (lowercase names).
    pub headers: Vec<KeyValueMatch>,
    /// Cookie conditions.
    pub cookies: Vec<KeyValueMatch>,
    /// Query parameter conditions.
    pub query: Vec<KeyValueMatch>,
    /// Conditions on the verified JWT's claims (as text: strings as they are, numbers and
    /// booleans in their JSON spelling).
    pub claims: Vec<KeyValueMatch>,
    /// The backend, resolved.
    pub backend: ObjectId,
}

/// A rule's `mirror`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Mirror {
    /// The shadow backend, resolved.
    pub backend: ObjectId,
    /// Share of the rule's requests copied, 0-100.
    pub percent: u32,
    /// Requests with larger bodies are not mirrored.
    pub max_body_size: usize,
    /// Copies in flight at once (per rule); more are dropped and counted.
    pub max_in_flight: u32,
}
