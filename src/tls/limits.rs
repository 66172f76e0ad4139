//! Connection limits of one listener: what a flooding peer can hold, and what is always left for
//! a fresh client.
//!
//! Two pools, accounted separately (issue 12, "hostile edge"):
//!
//! - **Handshakes in flight**, before anyone is authenticated, are bounded globally
//!   ([`ServerLimits::max_handshakes`]) and per source IP address
//!   ([`ServerLimits::max_handshakes_per_peer`]). An address is the only thing known about a peer
//!   before its certificate, so that is what the pre-authentication bound is keyed by: a few
//!   addresses that open connections and never finish their handshakes hold at most their share,
//!   never the whole pool (the defaults let fifteen such addresses in before the pool is full).
//! - **Established connections**, after authentication, are bounded globally
//!   ([`ServerLimits::max_connections`]) and per identity
//!   ([`ServerLimits::max_connections_per_identity`]); the last
//!   [`ServerLimits::reserved_connections`] of them may only be taken by an identity that holds no
//!   connection yet, so identities at (or near) their cap can never take the slot a fresh client
//!   needs. The identity is the certificate's `role/name` (its SPIFFE id), not its fingerprint:
//!   authority belongs to the identity, and several certificates issued for one identity (a
//!   renewal, a re-issue) must not multiply its share.
//!
//! An established connection that has received no bytes for [`ServerLimits::idle_timeout`] is
//! closed; every HTTP/2 connection is limited to [`ServerLimits::max_concurrent_streams`]
//! concurrent calls and header lists of [`ServerLimits::max_header_list_size_bytes`].
//!
//! Every limit has a named default below and a field of the `[connections]` section of the node
//! and control-plane configurations ([`ConnectionLimits`]), where a zero or nonsensical value is a
//! configuration error, never clamped.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::kernel::config::{ConfigError, range};

/// Default bound on one TLS handshake: 5 s. A handshake not completed within it is dropped and
/// reported.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default bound on TLS handshakes in flight per listener, from every address together: 256.
pub const DEFAULT_MAX_HANDSHAKES: usize = 256;
/// Default bound on TLS handshakes in flight from one IP address: 16 (one sixteenth of
/// [`DEFAULT_MAX_HANDSHAKES`], so ten stalling addresses leave 96 handshakes for everyone else).
pub const DEFAULT_MAX_HANDSHAKES_PER_PEER: usize = 16;
/// Default bound on established (authenticated) connections per listener: 1024.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default bound on established connections of one identity (`role/name`) per listener: 32.
pub const DEFAULT_MAX_CONNECTIONS_PER_IDENTITY: usize = 32;
/// Default number of established-connection slots reserved for identities that hold no
/// connection yet: 64 (the last 64 of [`DEFAULT_MAX_CONNECTIONS`]).
pub const DEFAULT_RESERVED_CONNECTIONS: usize = 64;
/// Default idle timeout of an established connection: 300 s without a received byte closes it.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// The smallest idle timeout a configuration may set: 10 s, two keep-alive intervals of this
/// crate's own clients ([`crate::tls::client::KEEP_ALIVE_INTERVAL`]), so that a server never
/// closes a connection of ours that is merely idle.
pub const MIN_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default bound on concurrent HTTP/2 streams (calls in progress) on one connection: 64.
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 64;
/// Default bound on the size of one HTTP/2 header list a client may send: 16 KiB.
pub const DEFAULT_MAX_HEADER_LIST_SIZE_BYTES: u32 = 16 * 1024;

/// Limits of one listener. See the module docs for what each guarantees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// A handshake that has not completed within this is dropped and reported.
    pub handshake_timeout: Duration,
    /// Established (authenticated) connections beyond this are closed right after their
    /// handshake and reported.
    pub max_connections: usize,
    /// A connection from an address that already has this many handshakes in flight is closed
    /// before its own and reported: one host that opens connections and never completes them
    /// holds at most this many of the `max_handshakes` places, not all of them.
    pub max_handshakes_per_peer: usize,
    /// Handshakes in flight, from every address together; a connection beyond it is closed
    /// before its handshake and reported.
    pub max_handshakes: usize,
    /// Established connections of one identity (`role/name`); one more is closed right after its
    /// handshake and reported to the handshake observer with a reason naming this limit.
    pub max_connections_per_identity: usize,
    /// The last this many of `max_connections` may only be taken by an identity that holds no
    /// established connection yet.
    pub reserved_connections: usize,
    /// An established connection that has received no bytes for this long is closed.
    pub idle_timeout: Duration,
    /// Concurrent HTTP/2 streams per connection (advertised in SETTINGS).
    pub max_concurrent_streams: u32,
    /// Largest HTTP/2 header list a client may send, in bytes (advertised in SETTINGS).
    pub max_header_list_size_bytes: u32,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_handshakes_per_peer: DEFAULT_MAX_HANDSHAKES_PER_PEER,
            max_handshakes: DEFAULT_MAX_HANDSHAKES,
            max_connections_per_identity: DEFAULT_MAX_CONNECTIONS_PER_IDENTITY,
            reserved_connections: DEFAULT_RESERVED_CONNECTIONS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_concurrent_streams: DEFAULT_MAX_CONCURRENT_STREAMS,
            max_header_list_size_bytes: DEFAULT_MAX_HEADER_LIST_SIZE_BYTES,
        }
    }
}

/// The `[connections]` section of the node and control-plane configurations: the listener's
/// [`ServerLimits`], each with its default and range. Out of range is an error, never clamped.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionLimits {
    /// Bound on one TLS handshake. Default 5000, range 100..=60000.
    pub handshake_timeout_ms: u64,
    /// Handshakes in flight from every address together. Default 256, range 1..=65536.
    pub max_handshakes: u64,
    /// Handshakes in flight from one IP address. Default 16, range 1..=`max_handshakes`.
    pub max_handshakes_per_address: u64,
    /// Established connections. Default 1024, range 2..=1000000.
    pub max_connections: u64,
    /// Established connections of one identity (`role/name`). Default 32, range
    /// 1..=`max_connections`.
    pub max_connections_per_identity: u64,
    /// Established slots reserved for identities that hold none yet. Default 64, range
    /// 1..=`max_connections` - 1.
    pub reserved_connections: u64,
    /// An established connection with no byte received for this long is closed. Default 300000,
    /// range 10000..=86400000 (at least two keep-alive intervals of this crate's clients).
    pub idle_timeout_ms: u64,
    /// Concurrent HTTP/2 streams per connection. Default 64, range 1..=10000.
    pub max_concurrent_streams: u64,
    /// Largest HTTP/2 header list a client may send. Default 16384, range 1024..=1048576.
    pub max_header_list_size_bytes: u64,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        let d = ServerLimits::default();
        Self {
            handshake_timeout_ms: millis(d.handshake_timeout),
            max_handshakes: d.max_handshakes as u64,
            max_handshakes_per_address: d.max_handshakes_per_peer as u64,
            max_connections: d.max_connections as u64,
            max_connections_per_identity: d.max_connections_per_identity as u64,
            reserved_connections: d.reserved_connections as u64,
            idle_timeout_ms: millis(d.idle_timeout),
            max_concurrent_streams: u64::from(d.max_concurrent_streams),
            max_header_list_size_bytes: u64::from(d.max_header_list_size_bytes),
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl ConnectionLimits {
    /// Checks every range; `section` prefixes the field names in errors (`connections`).
    pub fn validate(&self, section: &str) -> Result<(), ConfigError> {
        let f = |name: &str| format!("{section}.{name}");
        range(&f("handshake_timeout_ms"), self.handshake_timeout_ms, 100, 60_000)?;
        range(&f("max_handshakes"), self.max_handshakes, 1, 65_536)?;
        range(&f("max_handshakes_per_address"), self.max_handshakes_per_address, 1, self.max_handshakes)?;
        range(&f("max_connections"), self.max_connections, 2, 1_000_000)?;
        range(&f("max_connections_per_identity"), self.max_connections_per_identity, 1, self.max_connections)?;
        range(&f("reserved_connections"), self.reserved_connections, 1, self.max_connections - 1)?;
        range(&f("idle_timeout_ms"), self.idle_timeout_ms, millis(MIN_IDLE_TIMEOUT), 86_400_000)?;
        range(&f("max_concurrent_streams"), self.max_concurrent_streams, 1, 10_000)?;
        range(&f("max_header_list_size_bytes"), self.max_header_list_size_bytes, 1024, 1 << 20)?;
        Ok(())
    }

    /// The listener limits these settings describe (call [`Self::validate`] first; a value too
    /// large for the platform saturates, which `validate` has already excluded).
    pub fn server_limits(&self) -> ServerLimits {
        let size = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        let narrow = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        ServerLimits {
            handshake_timeout: Duration::from_millis(self.handshake_timeout_ms),
            max_connections: size(self.max_connections),
            max_handshakes_per_peer: size(self.max_handshakes_per_address),
            max_handshakes: size(self.max_handshakes),
            max_connections_per_identity: size(self.max_connections_per_identity),
            reserved_connections: size(self.reserved_connections),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            max_concurrent_streams: narrow(self.max_concurrent_streams),
            max_header_list_size_bytes: narrow(self.max_header_list_size_bytes),
        }
    }
}

/// Handshakes in flight per IP address.
pub(crate) type InFlightByPeer = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// One handshake in flight from an address; dropping it (however the handshake ends) frees its
/// place.
pub(crate) struct PeerHandshake {
    table: InFlightByPeer,
    ip: IpAddr,
}

impl PeerHandshake {
    /// A place for one more handshake from `ip`, or `None` when it has `max` in flight.
    pub(crate) fn enter(table: &InFlightByPeer, ip: IpAddr, max: usize) -> Option<Self> {
        let mut t = table.lock().unwrap_or_else(|p| p.into_inner());
        let n = t.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Self { table: table.clone(), ip })
    }
}

impl Drop for PeerHandshake {
    fn drop(&mut self) {
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = t.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                t.remove(&self.ip);
            }
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_identity: HashMap<String, usize>,
}

/// The established connections of one listener, per identity. One mutex: admission reads and
/// changes the total and one identity's count together, and it is taken once per connection
/// (never per request), so it is not contended.
#[derive(Debug, Clone, Default)]
pub(crate) struct Established {
    counts: Arc<Mutex<Counts>>,
}

/// One admitted connection; dropping it (when the connection ends) frees its slot.
#[derive(Debug)]
pub(crate) struct ConnectionSlot {
    counts: Arc<Mutex<Counts>>,
    identity: String,
}

impl Established {
    /// Admits one more connection of `identity`, or says which limit refuses it. Checked in
    /// order: the identity's own cap, the global cap, then the reserve (only an identity holding
    /// no connection may take one of the last `reserved_connections` slots).
    pub(crate) fn admit(&self, identity: &str, limits: &ServerLimits) -> Result<ConnectionSlot, String> {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let held = c.by_identity.get(identity).copied().unwrap_or(0);
        if held >= limits.max_connections_per_identity {
            return Err(format!(
                "identity {identity} already holds {held} connections \
                 (max_connections_per_identity = {})",
                limits.max_connections_per_identity
            ));
        }
        if c.total >= limits.max_connections {
            return Err(format!("connection limit reached (max_connections = {})", limits.max_connections));
        }
        let unreserved = limits.max_connections.saturating_sub(limits.reserved_connections);
        if held > 0 && c.total >= unreserved {
            return Err(format!(
                "only the {} reserved connections are left (reserved_connections), kept for identities \
                 that hold none; identity {identity} already holds {held}",
                limits.max_connections - c.total
            ));
        }
        c.total += 1;
        *c.by_identity.entry(identity.to_string()).or_insert(0) += 1;
        Ok(ConnectionSlot { counts: self.counts.clone(), identity: identity.to_string() })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.by_identity.get_mut(&self.identity) {
            *n -= 1;
            if *n == 0 {
                c.by_identity.remove(&self.identity);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize, per_identity: usize, reserved: usize) -> ServerLimits {
        ServerLimits {
            max_connections: max,
            max_connections_per_identity: per_identity,
            reserved_connections: reserved,
            ..ServerLimits::default()
        }
    }

    #[test]
    fn an_identity_at_its_cap_is_refused_naming_the_limit() {
        let e = Established::default();
        let l = limits(10, 2, 1);
        let _a = e.admit("observer/a", &l).unwrap();
        let _b = e.admit("observer/a", &l).unwrap();
        let err = e.admit("observer/a", &l).unwrap_err();
        assert!(err.contains("max_connections_per_identity = 2"), "{err}");
        let _c = e.admit("observer/b", &l).unwrap();
    }

    #[test]
    fn the_reserve_is_only_for_identities_holding_nothing() {
        let e = Established::default();
        let l = limits(4, 4, 2);
        let held: Vec<_> = (0..2).map(|_| e.admit("actor/flood", &l).unwrap()).collect();
        let err = e.admit("actor/flood", &l).unwrap_err();
        assert!(err.contains("reserved_connections"), "{err}");
        let fresh = e.admit("actor/fresh", &l).unwrap();
        let err = e.admit("actor/fresh", &l).unwrap_err();
        assert!(err.contains("reserved_connections"), "{err}");
        let last = e.admit("actor/other", &l).unwrap();
        let err = e.admit("actor/late", &l).unwrap_err();
        assert_eq!(err, "connection limit reached (max_connections = 4)");
        drop(last);
        drop(fresh);
        drop(held);
        let _again = e.admit("actor/flood", &l).unwrap();
    }

    #[test]
    fn default_settings_are_valid_and_match_the_default_limits() {
        let d = ConnectionLimits::default();
        d.validate("connections").unwrap();
        assert_eq!(d.server_limits(), ServerLimits::default());
    }

    #[test]
    fn zero_and_nonsensical_settings_are_errors_naming_the_field() {
        let cases: Vec<(ConnectionLimits, &str)> = vec![
            (ConnectionLimits { max_connections: 0, ..Default::default() }, "connections.max_connections"),
            (ConnectionLimits { max_handshakes: 0, ..Default::default() }, "connections.max_handshakes"),
            (
                ConnectionLimits { max_handshakes_per_address: 300, ..Default::default() },
                "connections.max_handshakes_per_address",
            ),
            (
                ConnectionLimits { max_connections_per_identity: 0, ..Default::default() },
                "connections.max_connections_per_identity",
            ),
            (ConnectionLimits { reserved_connections: 1024, ..Default::default() }, "connections.reserved_connections"),
            (ConnectionLimits { reserved_connections: 0, ..Default::default() }, "connections.reserved_connections"),
            (ConnectionLimits { idle_timeout_ms: 1000, ..Default::default() }, "connections.idle_timeout_ms"),
            (
                ConnectionLimits { max_concurrent_streams: 0, ..Default::default() },
                "connections.max_concurrent_streams",
            ),
            (
                ConnectionLimits { max_header_list_size_bytes: 10, ..Default::default() },
                "connections.max_header_list_size_bytes",
            ),
            (ConnectionLimits { handshake_timeout_ms: 0, ..Default::default() }, "connections.handshake_timeout_ms"),
        ];
        for (cfg, field) in cases {
            match cfg.validate("connections") {
                Err(ConfigError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }
}
