//! Load-balancing policies: how a cluster picks one backend among the ready ones.

pub mod maglev;
