//! Backups proven by restoring them: policies (`model`, parsed and
//! validated by `spec`), when they run (`schedule`), what retention keeps
//! (`retention`), how a policy stands against its RPO (`status`) — all
//! pure — and `controller`, which sends jobs to the agent that holds the
//! data and records what comes back.

pub mod controller;
pub mod model;
pub mod retention;
pub mod schedule;
pub mod spec;
pub mod status;
pub mod wire;
