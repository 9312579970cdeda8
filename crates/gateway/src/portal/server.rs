//! Developer portal, its own listener (`portal.address`): started, moved and stopped by reloads
//! like any listener — bound before the swap (a taken address refuses the reload), served after
//! it. Pages come from the live snapshot; `POST /try` goes to the try-it proxy.

use super::tryit;
use crate::snapshot::Snapshot;
use arc_swap::{ArcSwap, ArcSwapOption};
use bytes::Bytes;
use gatehouse_config::{Config, PortalMount};
use http::{Method, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// The portal's part of the control plane: the changelog, the listener, the try-it target.
#[derive(Default)]
pub(crate) struct PortalControl {
    /// The last reloads' public-API changes.
    pub(crate) changelog: Arc<Mutex<super::Changelog>>,
    server: Mutex<Option<Running>>,
    target: Arc<ArcSwapOption<SocketAddr>>,
}

struct Running {
    /// `portal.address` as configured (port 0 stays 0 here, so it is not rebound every reload).
    configured: SocketAddr,
    local: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
}

/// A socket bound before the swap, to be served after it.
pub(crate) struct Bound(SocketAddr, std::net::TcpListener);

impl PortalControl {
    /// Binds the portal's address when the new config asks for one the portal does not serve yet.
    pub(crate) fn bind(&self, config: &Config) -> Result<Option<Bound>, String> {
        let Some(PortalMount::Address(addr)) = config.gateway.portal.as_ref().map(|p| &p.mount)
        else {
            return Ok(None);
        };
        let running = self.server.lock().unwrap_or_else(|p| p.into_inner());
        if running.as_ref().is_some_and(|r| r.configured == *addr) {
            return Ok(None);
        }
        let l = std::net::TcpListener::bind(addr)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|e| format!("portal: cannot listen on {addr}: {e}"))?;
        Ok(Some(Bound(*addr, l)))
    }

    /// After the swap: serves a newly bound address, stops a listener the config no longer has,
    /// and points try-it at the config's first HTTP listener.
    pub(crate) fn commit(
        &self,
        config: &Config,
        bound: Option<Bound>,
        snapshot: &Arc<ArcSwap<Snapshot>>,
        target: Option<SocketAddr>,
    ) -> Result<(), String> {
        self.target.store(target.map(Arc::new));
        let wanted = matches!(
            config.gateway.portal.as_ref().map(|p| &p.mount),
            Some(PortalMount::Address(_))
        );
        let mut running = self.server.lock().unwrap_or_else(|p| p.into_inner());
        if bound.is_some() || !wanted {
            if let Some(old) = running.take() {
                tracing::info!(address = %old.local, "portal stopped");
                let _ = old.stop.send(true);
            }
        }
        if let Some(Bound(configured, l)) = bound {
            let listener = tokio::net::TcpListener::from_std(l)
                .map_err(|e| format!("portal: cannot listen on {configured}: {e}"))?;
            let local = listener.local_addr().map_err(|e| e.to_string())?;
            let (stop, stopped) = tokio::sync::watch::channel(false);
            tokio::spawn(serve(
                listener,
                snapshot.clone(),
                self.target.clone(),
                stopped,
            ));
            tracing::info!(address = %local, "portal listening");
            *running = Some(Running {
                configured,
                local,
                stop,
            });
        }
        Ok(())
    }

    /// The bound address of the portal's own listener.
    pub(crate) fn addr(&self) -> Option<SocketAddr> {
        self.server
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|r| r.local)
    }

    /// Stops the listener (shutdown).
    pub(crate) fn stop(&self) {
        if let Some(r) = self.server.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = r.stop.send(true);
        }
    }
}

async fn serve(
    listener: tokio::net::TcpListener,
    snapshot: Arc<ArcSwap<Snapshot>>,
    target: Arc<ArcSwapOption<SocketAddr>>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(_) => continue,
            },
            _ = stopped.wait_for(|s| *s) => return,
        };
        let (snapshot, target, builder) = (snapshot.clone(), target.clone(), builder.clone());
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let (snapshot, target) = (snapshot.clone(), target.clone());
                async move { Ok::<_, Infallible>(answer(&snapshot, &target, req).await) }
            });
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            // A stopped portal closes its connections too, so the old address is really given up.
            tokio::select! {
                _ = conn => {}
                _ = stopped.wait_for(|s| *s) => {}
            }
        });
    }
}

async fn answer(
    snapshot: &ArcSwap<Snapshot>,
    target: &ArcSwapOption<SocketAddr>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    if req.uri().path() == "/try" && req.method() == Method::POST {
        let to = target.load().as_deref().copied();
        return tryit::proxy(to, req).await;
    }
    let site = snapshot.load().portal.clone();
    match site {
        Some(site) => site.page(req.method(), req.uri().path()).into_response(),
        None => Response::new(Full::new(Bytes::from_static(b"no portal\n"))),
    }
}
