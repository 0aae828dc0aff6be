//! The Argosy agent: enrolls its host with the control plane (pinned CA,
//! CSR, short-lived client certificate), then holds one mutual-TLS
//! `Session` stream over which it reports the host's inventory and a
//! metrics sample every interval, resending what was not acknowledged and
//! renewing its certificate before it expires.
//!
//! Map: [`config`] (flags, env, file) → [`agent::run`], which uses
//! [`state`] and [`enroll`] to get an identity, then runs
//! [`metrics`] (sampler), [`session`] (stream loop, over [`connection`],
//! buffering in [`unacked`], retrying per [`backoff`]), [`renew`] and
//! [`exporter`] (`/metrics`) together, sharing [`status`]. [`inventory`]
//! describes the host; [`docker`] is the only module that talks to Docker.
//! [`secrets`] asks for the secrets allocations need over the session and
//! keeps them in memory ([`secret_cache`]) or on tmpfs ([`mountinfo`]).
//! [`ingress`] is the host's HTTP/HTTPS reverse proxy: it applies the
//! `RoutingTable`s the session receives and reports `TrafficReport`s.

pub mod agent;
pub mod allocations;
pub mod backoff;
pub mod backup;
pub mod config;
pub mod connection;
pub mod desired;
pub mod docker;
pub mod enroll;
pub mod exporter;
pub mod health;
pub mod ingress;
pub mod inventory;
pub mod logging;
pub mod metrics;
pub mod mountinfo;
pub mod reconcile;
pub mod renew;
pub mod secret_cache;
pub mod secrets;
pub mod session;
pub mod state;
pub mod status;
pub mod unacked;

pub use agent::{AgentError, Options, run};

/// The check the pure modules' tests share: their code (before the tests,
/// comments aside) names none of the banned paths.
#[cfg(test)]
pub(crate) mod purity {
    /// What the ingress's decision modules must not name: the runtime, the
    /// HTTP library, files, sockets and clocks of their own (split so this
    /// file does not trip its own check).
    pub(crate) const INGRESS_IO: &[&str] = &[
        concat!("tok", "io"),
        concat!("hyp", "er"),
        concat!("std::", "fs"),
        concat!("Tcp", "Stream"),
        concat!("SystemTime", "::now"),
        concat!("Instant", "::now"),
    ];

    pub(crate) fn assert_avoids(file: &str, source: &str, banned: &[&str]) {
        let end = source.find("#[cfg(test)]").unwrap_or(source.len());
        let code: String = source[..end]
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            .collect();
        for banned in banned {
            assert!(!code.contains(banned), "{file} uses {banned}");
        }
    }
}
