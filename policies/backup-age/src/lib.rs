//! `deployment.admit`: a service that declares `pre_deploy_backup` deploys
//! only with a verified backup of that backup policy younger than
//! `max_age_hours` (configuration, default 24).

use argosy_policy_sdk::answer::Admit;
use argosy_policy_sdk::input::AdmitInput;
use argosy_policy_sdk::{Request, policy};

pub fn admit(request: Request<AdmitInput>) -> Admit {
    let max_age_hours: i64 = request.config("max_age_hours", 24);
    let input = &request.input;
    let Some(backup) = input.spec.pre_deploy_backup.as_deref() else {
        return Admit::allow();
    };
    let fact = input.facts.backups.get(backup).copied().unwrap_or_default();
    match fact.age_seconds {
        None => Admit::deny(format!(
            "{} needs a verified backup of {backup} before it deploys, and there is none: run `argosy backup run {backup}`",
            input.spec.name
        )),
        Some(age) if age > max_age_hours * 3600 => Admit::deny(format!(
            "the newest verified backup of {backup} is {}h old, more than {max_age_hours}h: run `argosy backup run {backup}` first",
            age / 3600
        )),
        Some(_) => Admit::allow(),
    }
}

policy!(AdmitInput => admit);
