//! Config flow, step 4 (part): a backend's `spec.discovery` -> `model::Discovery`, and the
//! endpoint files that the file provider reads at run time, checked the same way as `endpoints`.

use super::{relative_to_manifest, V};
use crate::de::{from_node, Collected};
use crate::error::{ConfigError, ConfigErrors};
use crate::loader::Ctx;
use crate::model::{Discovery, KubernetesPort, TtlBounds};
use crate::raw;
use crate::yaml::{parse_documents, Value};
use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

const PROVIDERS: &str = "`dns`, `file`, `etcd`, `kubernetes` or `registration`";

/// Validates `spec.discovery`; `None` after an error (which is recorded).
pub(super) fn discovery(
    v: &mut V,
    ctx: &Ctx,
    namespace: &str,
    spec: &raw::DiscoverySpec,
) -> Option<Discovery> {
    let set: Vec<&str> = [
        ("dns", spec.dns.is_some()),
        ("file", spec.file.is_some()),
        ("etcd", spec.etcd.is_some()),
        ("kubernetes", spec.kubernetes.is_some()),
        ("registration", spec.registration.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, on)| on.then_some(name))
    .collect();
    match set.as_slice() {
        [] => {
            v.errors.push(ctx.error(
                "spec.discovery",
                format!("`discovery` needs one provider: {PROVIDERS}"),
            ));
            return None;
        }
        [_] => {}
        [first, second, ..] => {
            v.errors.push(ctx.error(
                &format!("spec.discovery.{second}"),
                format!("`discovery` has both `{first}` and `{second}`: use exactly one provider"),
            ));
            return None;
        }
    }
    if let Some(d) = &spec.dns {
        return dns(v, ctx, d);
    }
    if let Some(f) = &spec.file {
        if f.path.trim().is_empty() {
            v.errors
                .push(ctx.error("spec.discovery.file.path", "`path` must not be empty"));
            return None;
        }
        return Some(Discovery::File {
            path: relative_to_manifest(ctx, &f.path),
        });
    }
    if let Some(e) = &spec.etcd {
        return etcd(v, ctx, e);
    }
    if let Some(k) = &spec.kubernetes {
        return kubernetes(v, ctx, namespace, k);
    }
    let ttl = spec.registration.as_ref().and_then(|r| r.ttl.as_ref());
    let ttl = v.duration(
        ctx,
        "spec.discovery.registration.ttl",
        ttl,
        Duration::from_secs(30),
    );
    Some(Discovery::Registration { ttl })
}

const DNS: &str = "spec.discovery.dns";

fn dns(v: &mut V, ctx: &Ctx, d: &raw::DnsSpec) -> Option<Discovery> {
    let before = v.errors.len();
    let resolver = d.resolver.as_deref().and_then(|r| resolver(v, ctx, r));
    let ttl = ttl_bounds(v, ctx, d);
    for (field, name) in [("name", &d.name), ("srv", &d.srv)] {
        if let Some(name) = name.as_deref().filter(|n| !is_dns_name(n)) {
            v.errors.push(ctx.error(
                &format!("{DNS}.{field}"),
                format!("invalid DNS name `{name}`: expected a name such as `tasks.internal`"),
            ));
        }
    }
    let problem = match (&d.name, &d.srv, d.port) {
        (Some(_), Some(_), _) => Some(("srv", "set `name` (A/AAAA records) or `srv`, not both")),
        (None, None, _) => Some(("", "`dns` needs `name` and `port`, or `srv`")),
        (Some(_), None, None | Some(0)) => Some((
            "port",
            "`name` needs a `port` between 1 and 65535: A/AAAA records carry none",
        )),
        (None, Some(_), Some(_)) => Some((
            "port",
            "`srv` takes its ports from the SRV records: remove `port`",
        )),
        _ => None,
    };
    if let Some((field, message)) = problem {
        let path = [DNS, field].join(".");
        v.errors
            .push(ctx.error(path.trim_end_matches('.'), message));
    }
    if v.errors.len() > before {
        return None;
    }
    Some(match (&d.name, &d.srv) {
        (Some(name), _) => Discovery::Dns {
            name: name.clone(),
            port: d.port.unwrap_or_default(),
            resolver,
            ttl,
        },
        (None, srv) => Discovery::Srv {
            name: srv.clone().unwrap_or_default(),
            resolver,
            ttl,
        },
    })
}

/// `IP:port`, or an IP alone meaning port 53.
fn resolver(v: &mut V, ctx: &Ctx, r: &str) -> Option<SocketAddr> {
    let parsed = r
        .parse::<SocketAddr>()
        .ok()
        .or_else(|| r.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)));
    if parsed.is_none() {
        v.errors.push(ctx.error(
            &format!("{DNS}.resolver"),
            format!("invalid resolver `{r}`: expected an IP address, optionally with a port, such as `127.0.0.1:53`"),
        ));
    }
    parsed
}

fn ttl_bounds(v: &mut V, ctx: &Ctx, d: &raw::DnsSpec) -> TtlBounds {
    let defaults = TtlBounds::default();
    let (min_at, max_at) = (format!("{DNS}.minTtl"), format!("{DNS}.maxTtl"));
    let ttl = TtlBounds {
        min: v.duration(ctx, &min_at, d.min_ttl.as_ref(), defaults.min),
        max: v.duration(ctx, &max_at, d.max_ttl.as_ref(), defaults.max),
    };
    if ttl.min.is_zero() {
        v.errors
            .push(ctx.error(&min_at, "`minTtl` must be more than 0"));
    } else if ttl.min > ttl.max {
        v.errors
            .push(ctx.error(&max_at, "`maxTtl` must not be less than `minTtl`"));
    }
    ttl
}

/// Letters, digits, `-` and `_` (SRV labels start with one) in dot-separated labels.
fn is_dns_name(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

fn etcd(v: &mut V, ctx: &Ctx, e: &raw::EtcdSpec) -> Option<Discovery> {
    let at = "spec.discovery.etcd";
    let before = v.errors.len();
    if e.endpoints.is_empty() {
        v.errors.push(ctx.error(
            &format!("{at}.endpoints"),
            "`endpoints` needs at least one etcd URL such as `http://127.0.0.1:2379`",
        ));
    }
    for (i, url) in e.endpoints.iter().enumerate() {
        let ok = url.strip_prefix("http://").is_some_and(|rest| {
            rest.rsplit_once(':').is_some_and(|(h, p)| {
                !h.is_empty() && p.trim_end_matches('/').parse::<u16>().is_ok()
            })
        });
        if !ok {
            v.errors.push(ctx.error(
                &format!("{at}.endpoints[{i}]"),
                format!("invalid etcd URL `{url}`: expected `http://host:port` (TLS to etcd is not supported yet)"),
            ));
        }
    }
    if e.prefix.is_empty() {
        v.errors.push(ctx.error(
            &format!("{at}.prefix"),
            "`prefix` must not be empty: it would watch every key of the cluster",
        ));
    }
    (v.errors.len() == before).then(|| Discovery::Etcd {
        endpoints: e.endpoints.clone(),
        prefix: e.prefix.clone(),
    })
}

fn kubernetes(v: &mut V, ctx: &Ctx, namespace: &str, k: &raw::KubernetesSpec) -> Option<Discovery> {
    let at = "spec.discovery.kubernetes";
    let before = v.errors.len();
    if k.service.is_empty() {
        v.errors
            .push(ctx.error(&format!("{at}.service"), "`service` must not be empty"));
    }
    let port = match k.port.parse::<u16>() {
        Ok(0) => None,
        Ok(n) => Some(KubernetesPort::Number(n)),
        Err(_) if !k.port.is_empty() => Some(KubernetesPort::Name(k.port.clone())),
        Err(_) => None,
    };
    if port.is_none() {
        v.errors.push(ctx.error(
            &format!("{at}.port"),
            "`port` must be a Service port name (`http`) or number (1-65535)",
        ));
    }
    (v.errors.len() == before).then(|| Discovery::Kubernetes {
        service: k.service.clone(),
        port: port.unwrap_or(KubernetesPort::Number(0)),
        namespace: k.namespace.clone().unwrap_or_else(|| namespace.to_string()),
    })
}

/// The endpoints in a discovery file: a YAML or JSON list written like a backend's `endpoints`
/// (`"10.0.0.1:8080"` or `{address, weight}`), each address an `IP:port` (the file provider
/// resolves no names). `file` names the file in errors, which carry its line and column.
pub fn parse_endpoints_file(
    file: &str,
    text: &str,
) -> Result<Vec<(SocketAddr, u32)>, ConfigErrors> {
    let file: Arc<str> = file.into();
    let error = |mark, path: String, message: String| ConfigError {
        file: file.clone(),
        mark,
        object: String::new(),
        path,
        message,
    };
    let docs = parse_documents(text)
        .map_err(|e| ConfigErrors(vec![error(e.mark, String::new(), e.message)]))?;
    let [doc] = docs.as_slice() else {
        let message = format!(
            "expected one document holding a list of endpoints, found {}",
            docs.len()
        );
        return Err(ConfigErrors(vec![error(
            Default::default(),
            String::new(),
            message,
        )]));
    };
    let soft = RefCell::new(Collected::default());
    let parsed = from_node::<Vec<raw::EndpointSpec>>(doc, "", &soft);
    let mut errors: Vec<ConfigError> = Vec::new();
    let mut to_error =
        |e: crate::de::DeError| errors.push(error(e.mark.unwrap_or(doc.mark), e.path, e.message));
    let specs = parsed.map_err(&mut to_error).ok();
    soft.into_inner().errors.into_iter().for_each(&mut to_error);
    let mut out = Vec::new();
    let items = match &doc.value {
        Value::Seq(items) => items.as_slice(),
        _ => &[],
    };
    for (i, (spec, node)) in specs.iter().flatten().zip(items).enumerate() {
        match spec.address.parse::<SocketAddr>() {
            Ok(a) if a.port() != 0 => out.push((a, spec.weight.unwrap_or(1))),
            _ => errors.push(error(
                node.mark,
                format!("[{i}]"),
                format!(
                    "invalid endpoint `{}`: expected IP:port such as `10.0.0.1:8080`",
                    spec.address
                ),
            )),
        }
        if spec.weight == Some(0) {
            errors.push(error(
                node.mark,
                format!("[{i}].weight"),
                "endpoint weight must be at least 1".into(),
            ));
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        errors.sort_by_key(|e| (e.mark.line, e.mark.col));
        Err(ConfigErrors(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_files_read_like_endpoints() {
        let yaml = "- 10.0.0.1:80\n- {address: \"[::1]:81\", weight: 3}\n";
        let got = parse_endpoints_file("eps.yaml", yaml).unwrap();
        assert_eq!(
            got,
            vec![
                ("10.0.0.1:80".parse().unwrap(), 1),
                ("[::1]:81".parse().unwrap(), 3)
            ]
        );
        let json = r#"["10.0.0.1:80", {"address": "10.0.0.2:80", "weight": 2}]"#;
        assert_eq!(parse_endpoints_file("eps.json", json).unwrap().len(), 2);
        assert_eq!(parse_endpoints_file("eps.yaml", "[]").unwrap(), vec![]);
    }

    #[test]
    fn endpoint_file_errors_have_positions() {
        let text = "- 10.0.0.1:80\n- tasks.internal:80\n- {address: 10.0.0.2:80, weight: 0}\n";
        let e = parse_endpoints_file("eps.yaml", text)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "eps.yaml:2:3: [1]: invalid endpoint `tasks.internal:80`: expected IP:port such as `10.0.0.1:8080`\n\
             eps.yaml:3:3: [2].weight: endpoint weight must be at least 1"
        );
        let e = parse_endpoints_file("eps.yaml", "- {address: 10.0.0.2:80, wieght: 2}\n");
        assert_eq!(
            e.unwrap_err().to_string(),
            "eps.yaml:1:26: [0]: unknown field `wieght`, expected `address` or `weight`"
        );
        let e = parse_endpoints_file("eps.yaml", "- 10.0.0.1:80\n- [unclosed\n").unwrap_err();
        assert_eq!(e.0[0].mark.line, 3, "{e}");
        assert!(parse_endpoints_file("eps.yaml", "").is_err());
        assert!(parse_endpoints_file("eps.yaml", "{address: 10.0.0.1:80}").is_err());
    }
}
