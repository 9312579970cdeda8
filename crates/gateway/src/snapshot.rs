//! Config flow, last step: a snapshot is everything a request needs, built from one validated config
//! beside the live one and swapped in atomically. Requests load it once and keep it to the end.

use crate::routing::Router;
use crate::state::StatePlan;
use crate::telemetry::access_log::AccessLogger;
use crate::telemetry::metrics::{ErrorCounters, Metrics, RequestMetrics};
use crate::upstream::BackendRt;
use bytes::Bytes;
use gatehouse_config::{Action, Config};
use std::collections::HashMap;
use std::sync::Arc;

mod reuse;
use reuse::Reuse;

pub use crate::routing::split::Choice;

/// What a compiled rule carries besides the rule itself.
pub struct Target {
    /// Backends with weights above zero (forwarding rules).
    pub choices: Vec<Choice>,
    /// Sum of weights.
    pub total_weight: u32,
    /// Metrics for responses the proxy makes on this route (redirects, direct responses, errors).
    pub local_metrics: Arc<RequestMetrics>,
    /// Body of a direct response.
    pub body: Bytes,
    /// `rewrite.host` as a ready header value.
    pub host_rewrite: Option<http::HeaderValue>,
    /// Content type of a direct response, as a ready header value.
    pub content_type: Option<http::HeaderValue>,
    /// Errors the proxy answers on this route.
    pub errors: ErrorCounters,
    /// The rule's policy chain; `None` (nothing to run) when it has no policies and no fault.
    pub(crate) policies: Option<Box<crate::policy::Chain>>,
    /// Sticky split, overrides, mirror or run-time weights; `None` on a rule with none of them.
    pub(crate) release: Option<Box<crate::routing::split::Release>>,
    /// The Rollout driving this rule: `choices` is then `[stable, canary]`, and `release`
    /// reads their weights from the rollout's state.
    pub(crate) rollout: Option<Arc<crate::state::rollout::RolloutState>>,
}

impl Target {
    /// Picks a backend by weight, at random (see `routing::split`).
    pub fn pick(&self) -> Option<&Choice> {
        crate::routing::split::pick(&self.choices, self.total_weight)
    }

    /// Whether the rule runs a policy chain.
    pub fn has_policies(&self) -> bool {
        self.policies.is_some()
    }
}

/// Everything the data plane reads for one config version.
pub struct Snapshot {
    /// The config it was built from.
    pub config: Arc<Config>,
    /// The route table.
    pub router: Router<Target>,
    /// Backends by `namespace/name`.
    pub backends: Vec<Arc<BackendRt>>,
    /// Access logger, when enabled.
    pub access_log: Option<Arc<AccessLogger>>,
    /// Metrics for requests that matched no route.
    pub no_route_metrics: Arc<RequestMetrics>,
    /// Errors answered to requests that matched no route.
    pub no_route_errors: ErrorCounters,
    /// The process's metric families.
    pub metrics: Arc<Metrics>,
    /// The developer portal's pages for this config, when it has a portal.
    pub(crate) portal: Option<Arc<crate::portal::Site>>,
    /// The reload signal of open streams (WebSockets), carried from snapshot to snapshot.
    pub(crate) streams: Arc<crate::proxy::streams::Streams>,
}

impl Snapshot {
    /// Builds a snapshot over the run-time state `plan` decided for its backends.
    pub fn build(
        config: Arc<Config>,
        metrics: &Arc<Metrics>,
        plan: &StatePlan,
    ) -> Result<Self, String> {
        Self::build_from(config, metrics, plan, None)
    }

    /// Builds a snapshot, keeping from `previous` (the live one, on a reload) every backend and
    /// compiled rule whose definition did not change: a reload touching one route of thousands
    /// compiles that route only (see [`reuse`]).
    pub fn build_from(
        config: Arc<Config>,
        metrics: &Arc<Metrics>,
        plan: &StatePlan,
        previous: Option<&Snapshot>,
    ) -> Result<Self, String> {
        let reuse = Reuse::new(previous);
        let mut backends = HashMap::with_capacity(config.backends.len());
        for b in &config.backends {
            let state = plan
                .backend(&b.id)
                .ok_or_else(|| format!("no run-time state planned for backend {}", b.id))?;
            let rt = match reuse.backend(b, state) {
                Some(rt) => rt,
                None => {
                    let errors = metrics.connect_errors(&b.id.to_string());
                    Arc::new(BackendRt::new(b, state.clone(), errors).with_tls(b)?)
                }
            };
            backends.insert(b.id.clone(), rt);
        }
        if let Some(e) = &plan.policies.redis_error {
            return Err(e.clone());
        }
        let policies = config.policies.iter().map(|p| (p.id.clone(), p)).collect();
        let sources = crate::policy::chain::Sources {
            policies: &policies,
            plan: &plan.policies,
            metrics,
        };
        let mut chain_error = None;
        let validators = crate::policy::validate::Validators::new(&config);
        let target = |route: &Arc<str>, index: usize, rule: &gatehouse_config::Rule| {
            let chain = crate::policy::Chain::compile(route, rule, &sources).unwrap_or_else(|e| {
                chain_error = Some(e);
                None
            });
            let chain = validators
                .attach(route, index, rule, chain)
                .unwrap_or_else(|e| {
                    chain_error = Some(e);
                    None
                });
            let chain = chain.map(Box::new);
            let mut choices = Vec::new();
            let mut total = 0;
            let rollout = plan.rollouts.for_rule(route, index).cloned();
            let release = crate::routing::split::Release::compile(route, rule, &backends, metrics);
            if let Some(r) = &rollout {
                choices = rollout_choices(r, route, &backends, metrics);
                total = crate::routing::rollout::FULL;
            } else if let Action::Forward(list) = &rule.action {
                for wb in list.iter().filter(|wb| wb.weight > 0) {
                    // Validation guarantees the reference resolves.
                    let Some(backend) = backends.get(&wb.backend) else {
                        continue;
                    };
                    total += wb.weight;
                    choices.push(Choice {
                        backend: backend.clone(),
                        metrics: Arc::new(metrics.request_metrics(route, &backend.id)),
                        until: total,
                    });
                }
            }
            Target {
                choices,
                total_weight: total,
                local_metrics: Arc::new(metrics.request_metrics(route, "")),
                body: match &rule.action {
                    Action::Direct(d) => Bytes::from(d.body.clone()),
                    _ => Bytes::new(),
                },
                content_type: match &rule.action {
                    Action::Direct(d) => http::HeaderValue::from_str(&d.content_type).ok(),
                    _ => None,
                },
                errors: ErrorCounters::new(route),
                host_rewrite: rule
                    .rewrite
                    .host
                    .as_deref()
                    .and_then(|h| http::HeaderValue::from_str(h).ok()),
                policies: chain,
                release: match &rollout {
                    None => release,
                    Some(r) => Some(crate::routing::split::Release::with_weights(
                        release,
                        r.weights.clone(),
                    )),
                },
                rollout,
            }
        };
        let router = reuse.router(&config, &backends, &plan.rollouts, &validators, target);
        if let Some(e) = chain_error {
            return Err(e);
        }
        let access_log = AccessLogger::new(&config.gateway.access_log)
            .map_err(|e| format!("cannot open access log: {e}"))?
            .map(Arc::new);
        let mut list: Vec<_> = backends.into_values().collect();
        list.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(Snapshot {
            no_route_metrics: Arc::new(metrics.request_metrics("none", "")),
            no_route_errors: ErrorCounters::new("none"),
            config,
            router,
            backends: list,
            access_log,
            metrics: metrics.clone(),
            portal: None,
            streams: previous.map(|p| p.streams.clone()).unwrap_or_default(),
        })
    }

    /// The route table as rows, in lookup order.
    pub fn route_rows(&self) -> Vec<crate::routing::RouteRow> {
        self.router.rows(describe_action)
    }
}

/// The `[stable, canary]` choices of a rule a Rollout drives; their request metrics feed the
/// rollout's samples.
fn rollout_choices(
    r: &crate::state::rollout::RolloutState,
    route: &str,
    backends: &HashMap<gatehouse_config::ObjectId, Arc<BackendRt>>,
    metrics: &Metrics,
) -> Vec<Choice> {
    let sides = [(&r.spec.stable, &r.stable), (&r.spec.canary, &r.canary)];
    // Validation guarantees both references resolve.
    (sides.into_iter())
        .filter_map(|(id, sample)| {
            let backend = backends.get(id)?;
            let mut m = metrics.request_metrics(route, &backend.id);
            m.rollout = Some(sample.clone());
            Some(Choice {
                backend: backend.clone(),
                metrics: Arc::new(m),
                // Only a passed-through TLS connection (which has no `Release`) reads these: it
                // goes to stable. Requests split by the rollout's weights.
                until: crate::routing::rollout::FULL,
            })
        })
        .collect()
}

/// A one-line description of a rule's action, for route tables.
pub fn describe_action(rule: &gatehouse_config::Rule) -> String {
    match &rule.action {
        Action::Forward(list) => {
            let parts: Vec<String> = list
                .iter()
                .map(|b| format!("{} ({})", b.backend, b.weight))
                .collect();
            let mut s = format!("forward {}", parts.join(", "));
            if let Some(p) = rule.rewrite.path.as_deref() {
                match p {
                    gatehouse_config::PathRewrite::Prefix(x) => {
                        s.push_str(&format!(" rewrite prefix {x}"))
                    }
                    gatehouse_config::PathRewrite::Regex(r, sub) => {
                        s.push_str(&format!(" rewrite {} -> {sub}", r.1.as_str()))
                    }
                }
            }
            if let Some(h) = &rule.rewrite.host {
                s.push_str(&format!(" rewrite host {h}"));
            }
            s
        }
        // Unset parts keep the request's own; shown as they will be sent, `:port` included.
        Action::Redirect(r) => format!(
            "redirect {} {}{}{}{}",
            r.status,
            r.scheme
                .as_deref()
                .map(|s| format!("{s}://"))
                .unwrap_or_default(),
            r.host.as_deref().unwrap_or(""),
            r.port.map(|p| format!(":{p}")).unwrap_or_default(),
            r.path.as_deref().unwrap_or("")
        ),
        Action::Direct(d) => format!("respond {}", d.status),
    }
}
