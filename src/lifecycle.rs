//! Where the gateway is in its life: listening yet, draining yet. Set by the server, read by
//! the proxy (a draining gateway asks clients to close) and by admin (`/ready`).

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

/// The gateway's lifecycle flags.
#[derive(Debug, Default)]
pub struct Lifecycle {
    /// Set on SIGTERM / SIGQUIT: `/ready` answers 503 so load balancers stop sending traffic.
    draining: AtomicBool,
    /// The proxy listeners accept connections: pingora binds them only after the first
    /// discovery, so `/ready` must wait for them too.
    listening: AtomicBool,
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

    /// The proxy listeners were seen to accept connections.
    pub fn set_listening(&self) {
        self.listening.store(true, Relaxed);
    }
}
