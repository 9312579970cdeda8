//! Connection flow telemetry of passed-through connections (`TCP`/`TLS` listeners) and upgraded
//! HTTP exchanges (WebSockets): how each connection ended up, the tunnels open and the bytes they
//! carry. Handles are resolved once per connection, never per byte.

use crate::proxy::tunnel::TunnelMetrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectionLabels {
    listener: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TunnelLabels {
    protocol: &'static str,
    backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ByteLabels {
    protocol: &'static str,
    backend: String,
    direction: &'static str,
}

/// How a passed-through connection was handled (the `result` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamResult {
    /// Connected to an endpoint and tunnelled.
    Forwarded,
    /// A TLS connection whose server name no Route's `hosts` match (or with no server name).
    NoRoute,
    /// The start of a TLS connection was not a valid ClientHello, or did not arrive in time.
    BadClientHello,
    /// The backend had no endpoint to send it to.
    NoEndpoint,
    /// Every endpoint tried failed to connect.
    ConnectFailed,
}

impl StreamResult {
    fn as_str(self) -> &'static str {
        match self {
            StreamResult::Forwarded => "forwarded",
            StreamResult::NoRoute => "no_route",
            StreamResult::BadClientHello => "bad_client_hello",
            StreamResult::NoEndpoint => "no_endpoint",
            StreamResult::ConnectFailed => "connect_failed",
        }
    }
}

/// The stream metric families.
#[derive(Clone)]
pub(crate) struct StreamMetrics {
    connections: Family<ConnectionLabels, Counter>,
    open: Family<TunnelLabels, Gauge>,
    bytes: Family<ByteLabels, Counter>,
}

impl StreamMetrics {
    /// Registers the families in `registry` (prefixed `gatehouse_` by it).
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let m = StreamMetrics {
            connections: Family::default(),
            open: Family::default(),
            bytes: Family::default(),
        };
        registry.register(
            "stream_connections",
            "Connections of TCP and TLS passthrough listeners, by listener and result",
            m.connections.clone(),
        );
        registry.register(
            "tunnels_open",
            "Tunnels (passed-through connections) open now, by protocol and backend",
            m.open.clone(),
        );
        registry.register(
            "tunnel_bytes",
            "Bytes carried by tunnels, by protocol, backend and direction (upstream: sent to the backend)",
            m.bytes.clone(),
        );
        m
    }

    /// Counts one connection of `listener`.
    pub(crate) fn connection(&self, listener: &str, result: StreamResult) {
        self.connections
            .get_or_create(&ConnectionLabels {
                listener: listener.to_string(),
                result: result.as_str(),
            })
            .inc();
    }

    /// The handles of one tunnel to `backend`.
    pub(crate) fn tunnel(&self, protocol: &'static str, backend: &str) -> TunnelMetrics {
        let bytes = |direction| {
            self.bytes
                .get_or_create(&ByteLabels {
                    protocol,
                    backend: backend.to_string(),
                    direction,
                })
                .clone()
        };
        TunnelMetrics {
            open: (self.open)
                .get_or_create(&TunnelLabels {
                    protocol,
                    backend: backend.to_string(),
                })
                .clone(),
            to_upstream: bytes("upstream"),
            to_downstream: bytes("downstream"),
        }
    }
}
