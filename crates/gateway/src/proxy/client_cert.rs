//! Request flow, steps 1 and 7 (HTTPS listeners with `tls.clientAuth`): the verified client
//! certificate's subject, read once per connection after the handshake, then handed to each
//! request — in its extensions (policies), the access log, and the `x-client-cert-subject` header
//! sent upstream. A client's own copy of that header is always removed, whether or not the
//! listener asks for certificates, so a backend can trust the header it receives.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use std::sync::Arc;

/// The header that carries the verified subject upstream.
pub(crate) static X_CLIENT_CERT_SUBJECT: HeaderName =
    HeaderName::from_static("x-client-cert-subject");

/// A client certificate the listener verified, as policies find it in a request's extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCert {
    /// The subject distinguished name in RFC 4514 form (`CN=alice,O=Acme`), non-ASCII and
    /// control characters escaped as `\XX`.
    pub subject: Arc<str>,
    /// The same text as a header value, built once per connection.
    pub(crate) header: HeaderValue,
}

impl ClientCert {
    /// The subject of a DER certificate (the chain's first, the client's own). `None` when the
    /// certificate cannot be read, which rustls's verification already ruled out.
    pub(crate) fn from_der(der: &[u8]) -> Option<ClientCert> {
        let subject = subject_of(der)?;
        let header = HeaderValue::from_str(&subject).ok()?;
        Some(ClientCert {
            subject: subject.into(),
            header,
        })
    }
}

/// Makes the upstream request's `x-client-cert-subject` say what the gateway verified: a
/// client-sent copy is removed (`sent`: the header scan saw one), the verified subject set.
pub(crate) fn set_header(headers: &mut HeaderMap, sent: bool, cert: Option<&ClientCert>) {
    if sent {
        headers.remove(&X_CLIENT_CERT_SUBJECT);
    }
    if let Some(c) = cert {
        headers.insert(X_CLIENT_CERT_SUBJECT.clone(), c.header.clone());
    }
}

/// One DER element: tag, contents, and what follows it.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;

/// The subject Name of a certificate, rendered as RFC 4514 does: RDNs last to first, `,`
/// between them, `+` between the attributes of one RDN.
fn subject_of(der: &[u8]) -> Option<String> {
    let (SEQUENCE, cert, _) = element(der)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = element(cert)? else {
        return None;
    };
    let mut rest = tbs;
    // [0] version (optional), serial, signature algorithm, issuer, validity, subject.
    let (tag, _, after) = element(rest)?;
    if tag == 0xa0 {
        rest = after;
    }
    for _ in 0..4 {
        rest = element(rest)?.2;
    }
    let (SEQUENCE, mut name, _) = element(rest)? else {
        return None;
    };
    let mut rdns = Vec::new();
    while !name.is_empty() {
        let (SET, mut set, after) = element(name)? else {
            return None;
        };
        name = after;
        let mut attrs = Vec::new();
        while !set.is_empty() {
            let (SEQUENCE, atv, after) = element(set)? else {
                return None;
            };
            set = after;
            let (0x06, oid, value) = element(atv)? else {
                return None;
            };
            attrs.push(format!(
                "{}={}",
                attribute_name(oid),
                attribute_value(value)?
            ));
        }
        rdns.push(attrs.join("+"));
    }
    rdns.reverse();
    Some(rdns.join(","))
}

/// The short name RFC 4514 (and OpenSSL) give an attribute type, or its dotted OID.
fn attribute_name(oid: &[u8]) -> String {
    let short = match oid {
        [0x55, 0x04, 0x03] => "CN",
        [0x55, 0x04, 0x06] => "C",
        [0x55, 0x04, 0x07] => "L",
        [0x55, 0x04, 0x08] => "ST",
        [0x55, 0x04, 0x09] => "STREET",
        [0x55, 0x04, 0x0a] => "O",
        [0x55, 0x04, 0x0b] => "OU",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19] => "DC",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01] => "UID",
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01] => "emailAddress",
        _ => return dotted(oid),
    };
    short.to_string()
}

fn dotted(oid: &[u8]) -> String {
    let mut out = String::new();
    let mut n: u64 = 0;
    for b in oid {
        n = (n << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if out.is_empty() {
                // The first subidentifier packs two arcs (X.690 §8.19.4).
                let first = (n / 40).min(2);
                out = format!("{first}.{}", n - first * 40);
            } else {
                out.push_str(&format!(".{n}"));
            }
            n = 0;
        }
    }
    out
}

/// A string value escaped per RFC 4514; anything else as `#` and the hex of its DER.
fn attribute_value(value: &[u8]) -> Option<String> {
    let (tag, content, _) = element(value)?;
    let text: String = match tag {
        // UTF8String, PrintableString, IA5String, TeletexString (read as Latin-1), VisibleString.
        0x0c | 0x13 | 0x16 | 0x1a => String::from_utf8_lossy(content).into_owned(),
        0x14 => content.iter().map(|b| char::from(*b)).collect(),
        // BMPString: UTF-16BE.
        0x1e => char::decode_utf16(
            content
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]])),
        )
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect(),
        _ => {
            let len = value.len() - element(value)?.2.len();
            let hex: String = value[..len].iter().map(|b| format!("{b:02x}")).collect();
            return Some(format!("#{hex}"));
        }
    };
    Some(escape(&text))
}

/// RFC 4514 §2.4 escaping, plus `\XX` for every byte that a header value must not carry raw
/// (controls, DEL) or that is not ASCII, so the subject is a plain ASCII header value.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let last = text.len().saturating_sub(1);
    for (i, c) in text.char_indices() {
        let special = matches!(c, '"' | '+' | ',' | ';' | '<' | '>' | '\\')
            || (i == 0 && matches!(c, '#' | ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
            out.push(c);
        } else if c.is_ascii_control() || !c.is_ascii() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("\\{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_with(dn: &[(rcgen::DnType, &str)]) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(vec!["client.test".to_string()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (t, v) in dn {
            params.distinguished_name.push(t.clone(), *v);
        }
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn the_subject_reads_last_rdn_first_as_rfc_4514_writes_it() {
        let der = cert_with(&[
            (rcgen::DnType::CountryName, "DE"),
            (rcgen::DnType::OrganizationName, "Acme, Inc."),
            (rcgen::DnType::OrganizationalUnitName, "Ops"),
            (rcgen::DnType::CommonName, "alice"),
        ]);
        let c = ClientCert::from_der(&der).unwrap();
        assert_eq!(&*c.subject, r"CN=alice,OU=Ops,O=Acme\, Inc.,C=DE");
        assert_eq!(c.header.to_str().unwrap(), &*c.subject);
    }

    #[test]
    fn values_a_header_cannot_carry_are_escaped() {
        let der = cert_with(&[(rcgen::DnType::CommonName, " Zoë\r\nx-admin: 1 ")]);
        let c = ClientCert::from_der(&der).unwrap();
        assert_eq!(&*c.subject, r"CN=\ Zo\C3\AB\0D\0Ax-admin: 1\ ");
    }

    #[test]
    fn truncated_der_is_refused_not_a_panic() {
        let der = cert_with(&[(rcgen::DnType::CommonName, "alice")]);
        for cut in 0..der.len() {
            let _ = ClientCert::from_der(&der[..cut]);
        }
        assert!(ClientCert::from_der(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_none());
    }
}
