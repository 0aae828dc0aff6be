//! End-to-end test harness for Argosy: starts the real `argosy` and
//! `argosy-agent` binaries against a real store (SQLite or a fresh
//! PostgreSQL database per test), talks to them over the real gRPC, HTTP and
//! CLI interfaces, and prints every process's log when a test fails.
//!
//! A scenario is a plain `async fn name(env: &TestEnv) -> anyhow::Result<()>`;
//! [`both_stores!`] turns it into the tests `name::sqlite` and
//! `name::postgres`.
//!
//! Environment:
//! - `ARGOSY_TEST_POSTGRES_URL` — an admin URL of a PostgreSQL server; each
//!   PostgreSQL test creates (and drops) its own database there. Required:
//!   `scripts/test` starts a throwaway server and sets it.
//! - `ARGOSY_TEST_PATIENCE` — a factor applied to every wait (default 1,
//!   e.g. 3 on a slow machine).
//! - `ARGOSY_TEST_KEEP=1` — keep each test's folder (logs, data) instead of
//!   deleting it; its path is printed.
//! - `moto_server` on `PATH` — the S3 API the backup tests store to
//!   ([`s3`]); `scripts/test` finds the one `.ci/run` installs.

pub mod agent;
pub mod alertmanager;
pub mod api;
pub mod binaries;
pub mod control_plane;
pub mod docker;
pub mod env;
pub mod process;
pub mod receiver;
pub mod s3;
pub mod source_db;
pub mod wait;

pub use agent::Agent;
pub use api::{Authed, Bearer, HttpResponse};
pub use binaries::{Binaries, binaries};
pub use control_plane::{Cli, CliOutput, ControlPlane, Watch};
pub use env::{Store, TestEnv};
pub use wait::{eventually, eventually_within, patience};

/// The wall clock in Unix milliseconds, as the control plane keeps time.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A host status as its wire name, for messages.
pub fn status_name(status: i32) -> &'static str {
    pb::HostStatus::try_from(status).map_or("UNKNOWN", |s| s.as_str_name())
}

/// Fails unless `host` is online.
pub fn ensure_online(host: &pb::Host) -> anyhow::Result<()> {
    anyhow::ensure!(
        host.status == pb::HostStatus::Online as i32,
        "host {} is {}",
        host.id,
        status_name(host.status)
    );
    Ok(())
}

/// Re-exported so scenarios name wire types the same way.
pub use argosy_proto::v1 as pb;

/// Turns `async fn $name(env: &TestEnv) -> anyhow::Result<()>` into two
/// tests, `$name::sqlite` and `$name::postgres`, each with its own
/// [`TestEnv`]. A failing scenario prints the logs of every process it
/// started.
#[macro_export]
macro_rules! both_stores {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    let env = $crate::TestEnv::new($crate::Store::Sqlite).await;
                    let result = super::$name(&env).await;
                    env.finish(result);
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    let env = $crate::TestEnv::new($crate::Store::Postgres).await;
                    let result = super::$name(&env).await;
                    env.finish(result);
                }
            }
        )+
    };
}
