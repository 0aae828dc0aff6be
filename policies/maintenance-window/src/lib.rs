//! `deployment.admit`: production services deploy only inside a weekly
//! maintenance window (UTC).
//!
//! Configuration (defaults shown): `{"production_prefixes": ["prod-"],
//! "days": ["sat", "sun"], "start_hour": 2, "end_hour": 5}`. A service is
//! production when its name starts with one of the prefixes or its env has
//! `ARGOSY_ENV=production`. Dry runs are allowed (they change nothing).

use argosy_policy_sdk::answer::Admit;
use argosy_policy_sdk::input::AdmitInput;
use argosy_policy_sdk::{Request, policy};

pub fn admit(request: Request<AdmitInput>) -> Admit {
    let prefixes: Vec<String> = request.config("production_prefixes", vec!["prod-".to_owned()]);
    let days: Vec<String> = request.config("days", vec!["sat".to_owned(), "sun".to_owned()]);
    let start: u8 = request.config("start_hour", 2);
    let end: u8 = request.config("end_hour", 5);
    let input = &request.input;
    let spec = &input.spec;
    let production = prefixes.iter().any(|p| spec.name.starts_with(p.as_str()))
        || spec
            .env
            .get("ARGOSY_ENV")
            .is_some_and(|v| v == "production");
    if !production || input.dry_run {
        return Admit::allow();
    }
    let now = &input.now;
    let inside = days.contains(&now.weekday) && now.hour >= start && now.hour < end;
    if inside {
        return Admit::allow();
    }
    Admit::deny(format!(
        "{} is a production service: deploy it during the maintenance window ({} {:02}:00-{:02}:00 UTC); it is {} {:02}:{:02} UTC",
        spec.name,
        days.join("/"),
        start,
        end,
        now.weekday,
        now.hour,
        now.minute
    ))
}

policy!(AdmitInput => admit);
