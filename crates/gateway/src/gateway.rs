//! Config flow, apply step: the running gateway — the live snapshot, the listeners, and reload:
//! load, validate, build beside the live snapshot, bind new listeners, swap atomically, then retire
//! what the new config no longer has. Any failure before the swap leaves the old config serving.

use crate::proxy::listener::{self, ListenerHandle};
use crate::snapshot::Snapshot;
use crate::state::StateStore;
use crate::telemetry::metrics::Metrics;
use arc_swap::ArcSwap;
use gatehouse_config::{Config, ConfigErrors, Listener, ListenerProtocol, ObjectId, SourceFile};
use serde::Serialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Where the configuration comes from.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    /// A file or directory of manifests.
    Path(PathBuf),
    /// Text compiled into the binary (the quickstart).
    Embedded(&'static str),
}

impl ConfigSource {
    /// Reads and validates the configuration.
    pub fn load(&self) -> Result<Config, ConfigErrors> {
        match self {
            ConfigSource::Path(p) => gatehouse_config::load_path(p),
            ConfigSource::Embedded(text) => gatehouse_config::load_sources(&[SourceFile {
                name: "<quickstart>".into(),
                text: (*text).into(),
            }]),
        }
    }
}

/// Why the gateway could not start.
#[derive(Debug)]
pub enum StartError {
    /// The configuration is invalid.
    Config(ConfigErrors),
    /// Something else: a port in use, an unreadable certificate.
    Other(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Config(e) => write!(f, "{e}"),
            StartError::Other(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for StartError {}

/// The outcome of the last reload, shown by `GET /config`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReloadStatus {
    /// Whether it succeeded.
    pub ok: bool,
    /// What asked for it: `startup`, `file`, `signal`, `admin`.
    pub trigger: String,
    /// When, RFC 3339.
    pub at: String,
    /// The version served after it.
    pub version: String,
    /// Every error, when it failed.
    pub errors: Vec<String>,
}

/// The running gateway.
pub struct Gateway {
    /// The live snapshot; requests load it once each.
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    /// Metric families.
    pub metrics: Arc<Metrics>,
    source: ConfigSource,
    /// Run-time state that outlives reloads (endpoint sets, health, balancer positions).
    pub(crate) state: StateStore,
    listeners: tokio::sync::Mutex<HashMap<ObjectId, ListenerHandle>>,
    status: Mutex<ReloadStatus>,
    draining: AtomicBool,
    admin_addr: Mutex<Option<SocketAddr>>,
    version: tokio::sync::watch::Sender<String>,
    /// The runtimes that accept and serve connections, one per worker thread.
    workers: Vec<tokio::runtime::Handle>,
    /// The developer portal's listener and changelog.
    portal: crate::portal::PortalControl,
}

/// Now, as an RFC 3339 timestamp for admin output (`lastReload.at`, discovery's `lastUpdate`).
pub(crate) fn now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// The TLS server config of an HTTPS listener, built (certificates read) now.
pub fn tls_config(l: &Listener) -> Result<Option<Arc<rustls::ServerConfig>>, String> {
    match (&l.protocol, &l.tls) {
        (ListenerProtocol::HTTPS, Some(t)) => crate::proxy::tls::server_config(t)
            .map(Some)
            .map_err(|e| format!("Listener {}: {e}", l.id)),
        _ => Ok(None),
    }
}

/// As `tls_config`, with the certificate files watched and reloaded in place, failures counted
/// in `gatehouse_tls_reload_errors_total`.
fn watched_tls_config(
    l: &Listener,
    metrics: &Metrics,
) -> Result<Option<Arc<rustls::ServerConfig>>, String> {
    match (&l.protocol, &l.tls) {
        (ListenerProtocol::HTTPS, Some(t)) => {
            let name = l.id.to_string();
            let errors = metrics.tls_reload_errors(&name);
            crate::proxy::tls::watched_server_config(t, &name, errors)
                .map(Some)
                .map_err(|e| format!("Listener {}: {e}", l.id))
        }
        _ => Ok(None),
    }
}

/// A listener keeps its socket across reloads unless its address changes; protocol, certificates
/// and timeouts are applied to new connections in place.
fn needs_rebind(old: &Listener, new: &Listener) -> bool {
    old.address != new.address
}

impl Gateway {
    /// Builds the first snapshot from `config` and starts its listeners on the current runtime.
    pub async fn start(source: ConfigSource, config: Config) -> Result<Arc<Gateway>, StartError> {
        Self::start_on(source, config, vec![tokio::runtime::Handle::current()]).await
    }

    /// As `start`, with each listener accepting on every one of `workers` (single-threaded
    /// runtimes, one per core: connections, their requests and their upstream pools stay on one
    /// thread).
    pub async fn start_on(
        source: ConfigSource,
        config: Config,
        workers: Vec<tokio::runtime::Handle>,
    ) -> Result<Arc<Gateway>, StartError> {
        let metrics = Metrics::new();
        let state = StateStore::default();
        let config = Arc::new(config);
        let plan = state.plan(&config, &metrics);
        let mut snap =
            Snapshot::build(config.clone(), &metrics, &plan).map_err(StartError::Other)?;
        let portal = crate::portal::PortalControl::default();
        snap.portal = crate::portal::prepare(portal.changelog.clone(), None, config.clone())
            .await
            .site;
        let portal_socket = portal.bind(&config).map_err(StartError::Other)?;
        state.commit(&plan);
        crate::memory::release_freed();
        metrics.set_version(None, &config.version);
        metrics.reload(true);
        let gw = Arc::new(Gateway {
            snapshot: Arc::new(ArcSwap::from_pointee(snap)),
            metrics,
            source,
            state,
            listeners: tokio::sync::Mutex::new(HashMap::new()),
            status: Mutex::new(ReloadStatus {
                ok: true,
                trigger: "startup".into(),
                at: now(),
                version: config.version.clone(),
                errors: Vec::new(),
            }),
            draining: AtomicBool::new(false),
            admin_addr: Mutex::new(None),
            version: tokio::sync::watch::channel(config.version.clone()).0,
            workers,
            portal,
        });
        gw.apply_listeners(&config)
            .await
            .map_err(StartError::Other)?;
        let target = crate::portal::try_target(&config, &gw.listener_addrs().await);
        gw.portal
            .commit(&config, portal_socket, &gw.snapshot, target)
            .map_err(StartError::Other)?;
        Ok(gw)
    }

    /// Reloads from the source. On failure the old config keeps serving and the errors are returned.
    pub async fn reload(&self, trigger: &str) -> Result<String, Vec<String>> {
        // One reload at a time: listener changes must not interleave.
        let mut listeners = self.listeners.lock().await;
        // Reading and validating manifests is file I/O and CPU: it runs on the control thread's
        // blocking pool, never on a worker that serves traffic.
        let source = self.source.clone();
        let loaded = crate::runtime::control()
            .spawn_blocking(move || {
                let loaded = source.load();
                // What the load allocated and freed (its trees, the manifests as read) was freed
                // on this thread: hand it back here, where an allocator with per-thread heaps
                // (the binary's mimalloc) can see it.
                crate::memory::release_freed();
                loaded
            })
            .await;
        let result = match loaded {
            Err(join) => Err(vec![format!("loading the configuration failed: {join}")]),
            Ok(Err(errors)) => Err(errors.0.iter().map(|e| e.to_string()).collect::<Vec<_>>()),
            Ok(Ok(config)) => self
                .apply(config, &mut listeners)
                .await
                .map_err(|e| vec![e]),
        };
        drop(listeners);
        crate::memory::release_freed();
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        match &result {
            Ok(version) => {
                tracing::info!(trigger, version = %version, "configuration reloaded");
                self.version.send_replace(version.clone());
                self.metrics.reload(true);
                *status = ReloadStatus {
                    ok: true,
                    trigger: trigger.into(),
                    at: now(),
                    version: version.clone(),
                    errors: Vec::new(),
                };
            }
            Err(errors) => {
                for e in errors {
                    tracing::error!(trigger, "reload refused: {e}");
                }
                tracing::error!(
                    trigger,
                    count = errors.len(),
                    "reload refused; the previous configuration keeps serving"
                );
                self.metrics.reload(false);
                *status = ReloadStatus {
                    ok: false,
                    trigger: trigger.into(),
                    at: now(),
                    version: self.snapshot.load().config.version.clone(),
                    errors: errors.clone(),
                };
            }
        }
        result
    }

    async fn apply(
        &self,
        config: Config,
        listeners: &mut HashMap<ObjectId, ListenerHandle>,
    ) -> Result<String, String> {
        let config = Arc::new(config);
        let old = self.snapshot.load_full();
        if old.config.gateway.admin_address != config.gateway.admin_address {
            tracing::warn!("admin address changes take effect at the next restart");
        }
        if old.config.gateway.workers != config.gateway.workers {
            tracing::warn!("worker count changes take effect at the next restart");
        }
        let plan = self.state.plan(&config, &self.metrics);
        let mut snap = Snapshot::build_from(config.clone(), &self.metrics, &plan, Some(&old))?;
        let changelog = self.portal.changelog.clone();
        let portal =
            crate::portal::prepare(changelog, Some(old.config.clone()), config.clone()).await;
        snap.portal = portal.site.clone();
        let portal_socket = self.portal.bind(&config)?;
        // Everything that can fail happens before the swap: TLS configs and new sockets.
        let mut prepared = Vec::new();
        for l in &config.listeners {
            let tls = watched_tls_config(l, &self.metrics)?;
            let rebind = listeners
                .get(&l.id)
                .is_none_or(|h| needs_rebind(&h.spec, l));
            let socket = if rebind {
                // A listener moving to an address another listener still holds gets it after that
                // one is retired below; binding now would fail, so it waits.
                let taken = listeners
                    .values()
                    .any(|h| h.spec.address == l.address && l.address.port() != 0);
                if taken {
                    None
                } else {
                    Some(self.bind(l)?)
                }
            } else {
                None
            };
            prepared.push((l.clone(), tls, rebind, socket));
        }
        let version = config.version.clone();
        self.snapshot.store(Arc::new(snap));
        // Open WebSockets whose route or backend this reload removed start their grace.
        let live = self.snapshot.load();
        live.streams.reloaded(&live);
        self.state.commit(&plan);
        portal.commit(&self.portal.changelog);
        self.metrics
            .set_version(Some(&old.config.version), &version);

        let drain = config.gateway.drain_timeout;
        let keep: Vec<&ObjectId> = prepared.iter().filter(|p| !p.2).map(|p| &p.0.id).collect();
        let retired: Vec<ObjectId> = listeners
            .keys()
            .filter(|id| !keep.contains(id))
            .cloned()
            .collect();
        // Addresses being given up, with a signal for when their sockets are closed.
        let mut closing = HashMap::new();
        for id in retired {
            if let Some(h) = listeners.remove(&id) {
                tracing::info!(listener = %id, address = %h.local_addr, "listener stopped");
                // Passed-through connections have no request to finish: they get their own grace.
                h.stop(match h.spec.protocol.is_stream() {
                    true => config.gateway.stream_drain_timeout,
                    false => drain,
                });
                closing.insert(h.spec.address, h.socket_closed());
                tokio::spawn(h.join());
            }
        }
        for (spec, tls, rebind, socket) in prepared {
            if !rebind {
                if let Some(h) = listeners.get_mut(&spec.id) {
                    if h.spec != spec {
                        tracing::info!(listener = %spec.id, "listener settings updated in place");
                    }
                    h.update(spec, tls);
                }
                continue;
            }
            let socket = match socket {
                Some(s) => s,
                None => {
                    // The address belonged to a listener retired above: wait for its socket to close.
                    if let Some(closed) = closing.get_mut(&spec.address) {
                        let _ = closed.wait_for(|c| *c).await;
                    }
                    self.bind(&spec)?
                }
            };
            self.start_listener(spec, socket, tls, listeners)?;
        }
        let bound = listeners
            .iter()
            .map(|(id, h)| (id.to_string(), h.local_addr))
            .collect();
        let target = crate::portal::try_target(&config, &bound);
        self.portal
            .commit(&config, portal_socket, &self.snapshot, target)?;
        Ok(version)
    }

    /// Binds a listener's sockets, one per worker.
    fn bind(&self, l: &Listener) -> Result<listener::Bound, String> {
        listener::bind(l.address, self.workers.len())
            .map_err(|e| format!("Listener {}: cannot listen on {}: {e}", l.id, l.address))
    }

    fn start_listener(
        &self,
        spec: Listener,
        socket: listener::Bound,
        tls: Option<Arc<rustls::ServerConfig>>,
        listeners: &mut HashMap<ObjectId, ListenerHandle>,
    ) -> Result<(), String> {
        let name = spec.id.to_string();
        let gauge = self.metrics.active_connections(&name);
        let rejected = self.metrics.connections_rejected(&name);
        let id = spec.id.clone();
        let h = listener::start(
            spec,
            socket,
            tls,
            self.snapshot.clone(),
            gauge,
            rejected,
            &self.workers,
        )
        .map_err(|e| e.to_string())?;
        tracing::info!(listener = %id, address = %h.local_addr, protocol = ?h.spec.protocol, "listening");
        listeners.insert(id, h);
        Ok(())
    }

    async fn apply_listeners(&self, config: &Config) -> Result<(), String> {
        let mut listeners = self.listeners.lock().await;
        for l in &config.listeners {
            let tls = watched_tls_config(l, &self.metrics)?;
            let socket = self.bind(l)?;
            self.start_listener(l.clone(), socket, tls, &mut listeners)?;
        }
        Ok(())
    }

    /// Bound addresses by listener name (`namespace/name`).
    pub async fn listener_addrs(&self) -> HashMap<String, SocketAddr> {
        self.listeners
            .lock()
            .await
            .iter()
            .map(|(id, h)| (id.to_string(), h.local_addr))
            .collect()
    }

    /// Follows the served config version; changes after each successful reload.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<String> {
        self.version.subscribe()
    }

    /// The status of the last reload.
    pub fn status(&self) -> ReloadStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether the gateway is draining (SIGTERM received).
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// The admin listener's address, once bound.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        *self.admin_addr.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The developer portal's own listener address, when `portal.address` is configured.
    pub fn portal_addr(&self) -> Option<SocketAddr> {
        self.portal.addr()
    }

    pub(crate) fn set_admin_addr(&self, addr: SocketAddr) {
        *self.admin_addr.lock().unwrap_or_else(|p| p.into_inner()) = Some(addr);
    }

    /// Stops accepting on every listener and waits, up to the configured drain timeout, for
    /// in-flight requests to finish.
    pub async fn shutdown(&self) {
        self.draining.store(true, Ordering::Relaxed);
        self.portal.stop();
        let drain: Duration = self.snapshot.load().config.gateway.drain_timeout;
        let mut listeners = self.listeners.lock().await;
        let handles: Vec<ListenerHandle> = listeners.drain().map(|(_, h)| h).collect();
        for h in &handles {
            h.stop(drain);
        }
        for h in handles {
            h.join().await;
        }
    }
}
