//! Where the gateway is in its life: listening yet, draining yet, on which conf. Set by the
//! server, read by the proxy (a draining gateway asks clients to close) and by admin.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::SystemTime;

/// The conf the gateway serves: what was loaded, and when.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ActiveConf {
    /// XXH3-64 of the conf file's bytes, in hex: the same file gives the same hash on every
    /// replica.
    pub hash: String,
    /// When it was loaded (RFC 3339, UTC, milliseconds).
    pub loaded_at: String,
    /// The same, in seconds since the Unix epoch (for `/metrics`).
    #[serde(skip)]
    pub loaded_at_seconds: f64,
}

impl ActiveConf {
    /// The conf read from `bytes`, loaded now.
    pub fn of(bytes: &[u8]) -> ActiveConf {
        let now = SystemTime::now();
        ActiveConf {
            hash: format!("{:016x}", xxhash_rust::xxh3::xxh3_64(bytes)),
            loaded_at: crate::rfc3339(now),
            loaded_at_seconds: crate::unix_seconds(now),
        }
    }
}

/// The gateway's lifecycle flags.
#[derive(Debug, Default)]
pub struct Lifecycle {
    /// Set on SIGTERM / SIGQUIT: `/ready` answers 503 so load balancers stop sending traffic.
    draining: AtomicBool,
    /// The proxy listeners accept connections: pingora binds them only after the first
    /// discovery, so `/ready` must wait for them too.
    listening: AtomicBool,
    /// The conf being served (swapped by a reload).
    conf: Mutex<Option<ActiveConf>>,
}

impl Lifecycle {
    /// Whether the gateway is draining (going away).
    pub fn is_draining(&self) -> bool {
        self.draining.load(Relaxed)
    }

    /// From now on `/ready` answers 503 and responses ask clients to close their connections.
    pub fn start_draining(&self) {
        self.draining.store(true, Relaxed);
    }

    /// Whether the proxy listeners accept connections.
    pub fn is_listening(&self) -> bool {
        self.listening.load(Relaxed)
    }

    /// The conf now served.
    pub fn conf(&self) -> Option<ActiveConf> {
        crate::lock(&self.conf).clone()
    }

    /// A conf was loaded (at start, or by a reload).
    pub fn set_conf(&self, conf: ActiveConf) {
        *crate::lock(&self.conf) = Some(conf);
    }

    /// The proxy listeners were seen to accept connections.
    pub fn set_listening(&self) {
        self.listening.store(true, Relaxed);
    }
}
