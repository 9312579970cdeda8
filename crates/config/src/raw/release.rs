//! Config flow, step 3 (release by routing): the raw shapes of a rule's `stickySplit`,
//! `overrides` and `mirror`, as written in the manifests; `validate::release` checks them.

use super::KeyValueMatchSpec;
use serde::Deserialize;

/// A rule's `stickySplit`: exactly one of `cookie` and `header` (checked in validation).
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct StickySplitSpec {
    #[serde(default)]
    pub cookie: Option<String>,
    #[serde(default)]
    pub header: Option<String>,
}

/// One entry of a rule's `overrides`.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct OverrideSpec {
    #[serde(default, rename = "match")]
    pub matches: OverrideMatchSpec,
    pub backend: String,
}

/// `overrides[].match`: every condition listed must hold.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct OverrideMatchSpec {
    #[serde(default)]
    pub headers: Vec<KeyValueMatchSpec>,
    #[serde(default)]
    pub cookies: Vec<KeyValueMatchSpec>,
    #[serde(default)]
    pub query: Vec<KeyValueMatchSpec>,
    #[serde(default)]
    pub claims: Vec<KeyValueMatchSpec>,
}

/// A rule's `mirror`.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct MirrorSpec {
    pub backend: String,
    #[serde(default)]
    pub percent: Option<String>,
    #[serde(default)]
    pub max_body_size: Option<String>,
    #[serde(default)]
    pub max_in_flight: Option<u32>,
}
