//! The local demo, `scripts/demo.sh`: what Kubernetes and a cluster DNS would do for headway,
//! played by one process on loopback. It serves the demo services' names from a DNS server of
//! its own (one A record per ready pod, as for a headless service), runs `hello-service` pods on
//! 127.0.0.x addresses sharing one port, runs `headway` in front of them, and scales the pods on
//! command from stdin. Every process it starts, it stops and reaps.

pub mod command;
pub mod conf;
pub mod follow;
pub mod http;
pub mod options;
pub mod out;
pub mod preflight;
pub mod process;
pub mod runner;
pub mod services;
