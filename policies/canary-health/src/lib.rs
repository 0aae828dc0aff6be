//! `rollout.analyze`: promote a canary step whose allocations are all
//! healthy, without restarts or OOM kills beyond what is allowed; roll
//! back when any failed or restarted too often; wait otherwise.
//!
//! Configuration (defaults shown): `{"max_restarts": 0, "max_oom_kills": 0,
//! "min_healthy_seconds": 0}`.

use argosy_policy_sdk::answer::Analysis;
use argosy_policy_sdk::input::AnalyzeInput;
use argosy_policy_sdk::{Request, policy};

pub fn analyze(request: Request<AnalyzeInput>) -> Analysis {
    let max_restarts: u32 = request.config("max_restarts", 0);
    let max_oom_kills: u32 = request.config("max_oom_kills", 0);
    let min_healthy_ms: i64 = request.config::<i64>("min_healthy_seconds", 0) * 1000;
    let canary = request.input.canary;
    if canary.failed > 0 {
        return Analysis::rollback(format!("{} canary allocation(s) failed", canary.failed));
    }
    if canary.oom_kills > max_oom_kills {
        return Analysis::rollback(format!(
            "{} OOM kill(s) in the canary, more than {max_oom_kills}",
            canary.oom_kills
        ));
    }
    if canary.restarts > max_restarts {
        return Analysis::rollback(format!(
            "{} restart(s) in the canary, more than {max_restarts}",
            canary.restarts
        ));
    }
    if canary.healthy < canary.allocations || canary.healthy_for_ms < min_healthy_ms {
        return Analysis::wait(format!(
            "{}/{} canary allocation(s) healthy for {}s",
            canary.healthy,
            canary.allocations,
            canary.healthy_for_ms / 1000
        ));
    }
    Analysis::promote(format!(
        "{}/{} healthy, {} restart(s)",
        canary.healthy, canary.allocations, canary.restarts
    ))
}

policy!(AnalyzeInput => analyze);
