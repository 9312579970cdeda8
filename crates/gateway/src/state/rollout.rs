//! Config flow, after validation: each `Rollout`'s run-time state, keyed by the Rollout's id — its
//! phase, the `[stable, canary]` weights the rule's split reads per request (one load of its
//! `DynamicWeights`, see `routing::split`), the samples its
//! analysis judges, the last figures and why it failed. A reload that leaves a Rollout unchanged
//! keeps its state (a rolled-back canary stays rolled back); a changed one starts afresh. A
//! controller task per Rollout, on the control runtime, applies the schedule and runs the
//! analysis (see `controller`).

mod controller;

use crate::routing::rollout::{percent_of, position, FULL};
use crate::routing::split::DynamicWeights;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::rollout::{RolloutMetrics, Sample};
pub(crate) use controller::run;
use gatehouse_config::{Config, ObjectId, Rollout};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;

/// Where a rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Following its schedule.
    Progressing,
    /// An operator holds the weight where it is.
    Paused,
    /// The analysis found the canary worse than allowed: it gets nothing until an operator acts.
    RolledBack,
    /// The schedule completed (or an operator promoted it): the canary takes all traffic.
    Promoted,
    /// An operator stopped it: the canary gets nothing.
    Aborted,
}

impl Phase {
    /// The name shown by the admin API, the logs and the metrics.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Phase::Progressing => "Progressing",
            Phase::Paused => "Paused",
            Phase::RolledBack => "RolledBack",
            Phase::Promoted => "Promoted",
            Phase::Aborted => "Aborted",
        }
    }
}

/// The time a rollout's schedule is read against.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Clock {
    /// The system's wall clock: replicas agree as far as their clocks do (NTP).
    System,
    /// Wall time that advances with tokio's clock, so tests can pause and advance it.
    #[cfg_attr(not(test), allow(dead_code))]
    Tokio {
        /// Wall time at `base`.
        wall: SystemTime,
        /// The tokio instant `wall` corresponds to.
        base: tokio::time::Instant,
    },
}

impl Clock {
    /// Now.
    pub(crate) fn now(&self) -> SystemTime {
        match self {
            Clock::System => SystemTime::now(),
            Clock::Tokio { wall, base } => *wall + base.elapsed(),
        }
    }
}

/// One side's figures in an analysis.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Figures {
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    pub(crate) error_rate: f64,
    pub(crate) p99: Option<f64>,
}

/// The last analysis round.
#[derive(Debug, Clone)]
pub(crate) struct LastAnalysis {
    pub(crate) at: SystemTime,
    /// `pass` or `fail`.
    pub(crate) result: &'static str,
    pub(crate) stable: Figures,
    pub(crate) canary: Figures,
    /// Canary p99 over stable p99, when both sides had `minRequests`.
    pub(crate) p99_ratio: Option<f64>,
}

/// What changes under the lock (never on the request path).
pub(crate) struct Inner {
    pub(crate) phase: Phase,
    pub(crate) step: Option<usize>,
    pub(crate) next_change: Option<SystemTime>,
    pub(crate) reason: Option<String>,
    pub(crate) last: Option<LastAnalysis>,
    pub(crate) next_analysis: tokio::time::Instant,
}

/// One Rollout's run-time state.
pub struct RolloutState {
    /// The Rollout it was made for.
    pub(crate) spec: Rollout,
    /// `namespace/name`, for logs and metric labels.
    pub(crate) name: String,
    /// The canary's weight, 0..=`FULL`.
    weight: AtomicU32,
    /// The same as `[stable, canary]` weights, which the rule's split reads per request (one
    /// load); kept by the rule's `Release` across reloads that keep this state.
    pub(crate) weights: Arc<DynamicWeights>,
    pub(crate) inner: Mutex<Inner>,
    /// What the stable backend served through the rule since the last analysis.
    pub(crate) stable: Arc<Sample>,
    /// What the canary served through the rule since the last analysis.
    pub(crate) canary: Arc<Sample>,
    pub(crate) metrics: RolloutMetrics,
    /// Wakes the controller after an operator's action.
    pub(crate) wake: Arc<Notify>,
    pub(crate) clock: Clock,
    started: AtomicBool,
    /// Set when a reload removed or replaced the Rollout: its controller stops.
    pub(crate) retired: AtomicBool,
}

/// What an operator asks of a rollout (`POST /rollouts/{ns}/{name}/{action}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Promote,
    Pause,
    Resume,
    Abort,
}

impl Action {
    /// The action named in the admin path.
    pub(crate) fn parse(s: &str) -> Option<Action> {
        Some(match s {
            "promote" => Action::Promote,
            "pause" => Action::Pause,
            "resume" => Action::Resume,
            "abort" => Action::Abort,
            _ => return None,
        })
    }
}

impl RolloutState {
    /// State for `spec`, already at its schedule's position: a replica started in the middle of a
    /// rollout serves the weight the others serve from its first request.
    pub(crate) fn new(spec: Rollout, metrics: RolloutMetrics, clock: Clock) -> Arc<Self> {
        let state = Arc::new(RolloutState {
            name: spec.id.to_string(),
            weight: AtomicU32::new(0),
            weights: Arc::new(DynamicWeights::new(&[FULL, 0])),
            inner: Mutex::new(Inner {
                phase: Phase::Progressing,
                step: None,
                next_change: None,
                reason: None,
                last: None,
                next_analysis: tokio::time::Instant::now() + spec.analysis.interval,
            }),
            stable: Arc::default(),
            canary: Arc::default(),
            metrics,
            wake: Arc::default(),
            clock,
            started: AtomicBool::new(false),
            retired: AtomicBool::new(false),
            spec,
        });
        state
            .metrics
            .set_state(&state.name, Phase::Progressing.as_str());
        state.follow_schedule(&mut state.lock());
        state
    }

    /// The canary's weight now, 0..=`FULL`.
    pub(crate) fn weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed)
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn set_weight(&self, weight: u32) {
        self.weight.store(weight, Ordering::Relaxed);
        self.weights.set(&[FULL - weight, weight]);
        self.metrics.set_weight(&self.name, percent_of(weight));
    }

    /// Moves to `to` with one log line saying why.
    pub(crate) fn transition(&self, inner: &mut Inner, to: Phase, why: &str) {
        let from = inner.phase;
        inner.phase = to;
        match to {
            Phase::RolledBack | Phase::Aborted => self.set_weight(0),
            Phase::Promoted => self.set_weight(FULL),
            Phase::Progressing | Phase::Paused => {}
        }
        if matches!(to, Phase::Progressing | Phase::Paused | Phase::Promoted) {
            inner.reason = None;
        } else {
            inner.reason = Some(why.to_string());
        }
        if to != Phase::Progressing {
            inner.next_change = None;
        }
        self.metrics.set_state(&self.name, to.as_str());
        tracing::info!(
            target: "gatehouse::rollout",
            rollout = %self.name,
            from = from.as_str(),
            to = to.as_str(),
            weight = percent_of(self.weight()),
            "rollout {}: {} -> {}: {why}",
            self.name,
            from.as_str(),
            to.as_str()
        );
    }

    /// While progressing: the schedule's weight now, or the promotion when it is complete.
    pub(crate) fn follow_schedule(&self, inner: &mut Inner) {
        if inner.phase != Phase::Progressing {
            return;
        }
        let pos = position(&self.spec, self.clock.now());
        if pos.complete {
            inner.step = pos.step;
            self.transition(
                inner,
                Phase::Promoted,
                "schedule complete, the canary takes all traffic",
            );
            return;
        }
        if pos.step != inner.step || pos.weight != self.weight() {
            tracing::info!(
                target: "gatehouse::rollout",
                rollout = %self.name,
                step = ?pos.step,
                weight = percent_of(pos.weight),
                "rollout {}: canary weight {}%",
                self.name,
                percent_of(pos.weight)
            );
        }
        inner.step = pos.step;
        inner.next_change = pos.next_change;
        self.set_weight(pos.weight);
    }

    /// Applies an operator's action; `Err` says why it does not apply now.
    pub(crate) fn act(&self, action: Action) -> Result<(), String> {
        let mut inner = self.lock();
        let phase = inner.phase;
        let refuse = || {
            Err(format!("cannot {action:?} a rollout that is {}", phase.as_str()).to_lowercase())
        };
        match (action, phase) {
            (Action::Promote, Phase::Promoted) => return refuse(),
            (Action::Promote, _) => {
                self.transition(&mut inner, Phase::Promoted, "promoted by an operator")
            }
            (Action::Pause, Phase::Progressing) => {
                self.transition(&mut inner, Phase::Paused, "paused by an operator")
            }
            (Action::Pause, _) => return refuse(),
            (Action::Resume, Phase::Paused | Phase::RolledBack | Phase::Aborted) => {
                // A fresh window: what the canary did before the operator acted is judged no more.
                self.stable.take();
                self.canary.take();
                self.transition(
                    &mut inner,
                    Phase::Progressing,
                    "resumed by an operator, back on the schedule",
                );
                self.follow_schedule(&mut inner);
            }
            (Action::Resume, _) => return refuse(),
            (Action::Abort, Phase::Progressing | Phase::Paused | Phase::Promoted) => {
                self.transition(&mut inner, Phase::Aborted, "aborted by an operator")
            }
            (Action::Abort, _) => return refuse(),
        }
        drop(inner);
        self.wake.notify_one();
        Ok(())
    }

    /// Starts the controller on the control runtime, once.
    pub(crate) fn start(self: &Arc<Self>) {
        if !self.started.swap(true, Ordering::Relaxed) {
            crate::runtime::control().spawn(run(Arc::downgrade(self)));
        }
    }

    /// `GET /rollouts` for this rollout.
    pub(crate) fn describe(&self) -> serde_json::Value {
        controller::describe(self)
    }
}

/// The rollout states a new config will use, decided but not yet in force.
#[derive(Default)]
pub struct RolloutPlan {
    states: HashMap<ObjectId, Arc<RolloutState>>,
    /// By the rule they drive: (`namespace/name` of the route, rule index).
    by_rule: HashMap<(String, usize), Arc<RolloutState>>,
    metrics: RolloutMetrics,
}

impl RolloutPlan {
    /// The rollout driving rule `index` of `route`, if any.
    pub(crate) fn for_rule(&self, route: &str, index: usize) -> Option<&Arc<RolloutState>> {
        if self.by_rule.is_empty() {
            return None;
        }
        self.by_rule.get(&(route.to_string(), index))
    }
}

/// The rollout states of the config in force.
#[derive(Default)]
pub struct RolloutStore {
    current: Mutex<HashMap<ObjectId, Arc<RolloutState>>>,
}

impl RolloutStore {
    /// Decides the state of `config`'s rollouts: an unchanged Rollout keeps its state.
    pub(crate) fn plan(&self, config: &Config, metrics: &Metrics) -> RolloutPlan {
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let mut plan = RolloutPlan {
            metrics: metrics.rollout.clone(),
            ..RolloutPlan::default()
        };
        for r in &config.rollouts {
            let state = match current.get(&r.id) {
                Some(s) if s.spec == *r => s.clone(),
                _ => RolloutState::new(r.clone(), metrics.rollout.clone(), Clock::System),
            };
            plan.by_rule
                .insert((r.route.to_string(), r.rule), state.clone());
            plan.states.insert(r.id.clone(), state);
        }
        plan
    }

    /// Puts a plan in force: new states start their controllers, replaced and removed ones stop.
    pub(crate) fn commit(&self, plan: &RolloutPlan) {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        for (id, old) in current.iter() {
            let kept = plan.states.get(id).is_some_and(|s| Arc::ptr_eq(s, old));
            if !kept {
                old.retired.store(true, Ordering::Relaxed);
                old.wake.notify_one();
                if !plan.states.contains_key(id) {
                    plan.metrics.forget(&old.name);
                }
            }
        }
        *current = plan.states.clone();
        for s in current.values() {
            s.start();
        }
    }

    /// Every rollout in force, by id.
    pub(crate) fn list(&self) -> Vec<Arc<RolloutState>> {
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<_> = current.values().cloned().collect();
        all.sort_by(|a, b| a.spec.id.cmp(&b.spec.id));
        all
    }

    /// The rollout `id`.
    pub(crate) fn get(&self, id: &ObjectId) -> Option<Arc<RolloutState>> {
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        current.get(id).cloned()
    }
}

/// p99s below this count as this in the latency ratio: the ratio of two sub-millisecond figures
/// is scheduling noise, not a slower canary.
pub(crate) const P99_FLOOR: Duration = Duration::from_millis(1);

#[cfg(test)]
mod tests;
