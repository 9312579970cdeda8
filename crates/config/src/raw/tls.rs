//! Config flow, step 2 (raw shapes): TLS settings beyond a listener's certificates — the
//! client certificates a listener asks for (`tls.clientAuth`) and a backend's upstream TLS.

use serde::Deserialize;

/// `Listener.spec.tls.clientAuth`.
#[derive(Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct ClientAuthSpec {
    pub ca_file: String,
    #[serde(default)]
    pub mode: Option<ClientAuthMode>,
}

/// Whether a client certificate must be presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuthMode {
    Optional,
    Required,
}

impl<'de> Deserialize<'de> for ClientAuthMode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "Optional" => Ok(ClientAuthMode::Optional),
            "Required" => Ok(ClientAuthMode::Required),
            _ => Err(serde::de::Error::custom(format!(
                "unknown value `{s}`, expected `Optional` or `Required`{}",
                crate::error::hint(&s, ["Optional", "Required"])
            ))),
        }
    }
}

/// `Backend.spec.tls`.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamTlsSpec {
    #[serde(default)]
    pub ca_file: Option<String>,
    #[serde(default)]
    pub server_name: Option<String>,
    #[serde(default)]
    pub cert_file: Option<String>,
    #[serde(default)]
    pub key_file: Option<String>,
}
