//! The rules of user accounts and scopes, as plain functions over plain
//! data: valid user names, the lockout after failed logins, how long a login
//! session lasts, who may change whose password, and scopes as people write
//! them (regions and name prefixes).

use crate::auth::{self, Action, Principal, PrincipalKind, Scope, Target};
use std::collections::BTreeSet;

/// The longest user name.
pub const MAX_USER_NAME_CHARS: usize = 64;

/// A user name outside the rule.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error(
    "user name {0:?} is not valid: use 1–{MAX_USER_NAME_CHARS} lowercase letters, digits, '.', '_' or '-', e.g. alice or j.doe"
)]
pub struct InvalidUserName(pub String);

/// Whether `name` is a valid user name: 1–64 lowercase letters, digits,
/// `.`, `_` and `-`.
pub fn check_user_name(name: &str) -> Result<(), InvalidUserName> {
    let valid = (1..=MAX_USER_NAME_CHARS).contains(&name.len())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        });
    if valid {
        Ok(())
    } else {
        Err(InvalidUserName(name.to_owned()))
    }
}

/// Failed logins for one name within [`FAILURE_WINDOW_MS`] that lock it.
pub const MAX_FAILED_LOGINS: usize = 5;
/// The window the failed logins must fall in.
pub const FAILURE_WINDOW_MS: i64 = 15 * 60_000;
/// How long a locked name stays locked after its last counted failure.
pub const LOCKOUT_MS: i64 = 15 * 60_000;
/// How far back failures matter to [`locked_until`]: older ones can no
/// longer lock a name.
pub const FAILURE_LOOKBACK_MS: i64 = FAILURE_WINDOW_MS + LOCKOUT_MS;

/// Until when logins for a name are refused, given the times of its failed
/// logins since its last successful one (any order): `Some(end)` when
/// [`MAX_FAILED_LOGINS`] of them fell within [`FAILURE_WINDOW_MS`] and the
/// last of those is less than [`LOCKOUT_MS`] before `now_ms`. Refused
/// attempts are not failures (they are not checked), so a lockout ends on
/// time however often someone keeps trying.
pub fn locked_until(failures: &[i64], now_ms: i64) -> Option<i64> {
    let mut times = failures.to_vec();
    times.sort_unstable();
    times
        .windows(MAX_FAILED_LOGINS)
        .filter(|run| run[MAX_FAILED_LOGINS - 1] - run[0] <= FAILURE_WINDOW_MS)
        .map(|run| run[MAX_FAILED_LOGINS - 1] + LOCKOUT_MS)
        .max()
        .filter(|end| *end > now_ms)
}

/// A login session's lifetime when the caller asks for none.
pub const DEFAULT_SESSION_TTL_SECONDS: u64 = 12 * 3600;
/// The longest login session.
pub const MAX_SESSION_TTL_SECONDS: u64 = 7 * 24 * 3600;

/// A requested session lifetime above the maximum.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error(
    "a session of {0}s is longer than the 7-day maximum; log in again when it ends, or use an API token for automation"
)]
pub struct SessionTooLong(pub u64);

/// The lifetime in seconds of a session asked for `requested_seconds` (0:
/// the 12-hour default).
pub fn session_ttl_seconds(requested_seconds: u64) -> Result<u64, SessionTooLong> {
    match requested_seconds {
        0 => Ok(DEFAULT_SESSION_TTL_SECONDS),
        n if n > MAX_SESSION_TTL_SECONDS => Err(SessionTooLong(n)),
        n => Ok(n),
    }
}

/// How a password change is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordChange {
    /// An admin resets someone's (or their own) password; no current
    /// password is needed.
    Reset,
    /// A user changes their own password, proving it with the current one.
    Own,
}

/// Whether `caller` may change the password of user `target`: admins (who
/// may manage users) reset anyone's; a logged-in user changes their own
/// with the current password; anyone else is denied with the reason
/// managing users needs.
pub fn password_change(caller: &Principal, target: &str) -> Result<PasswordChange, auth::Denied> {
    match auth::authorize(caller, Action::ManageUsers, Target::Global) {
        Ok(()) => Ok(PasswordChange::Reset),
        Err(_) if caller.kind == PrincipalKind::User && caller.name == target => {
            Ok(PasswordChange::Own)
        }
        Err(denied) => Err(denied),
    }
}

/// A scope as given on the command line or the wire, with what is wrong.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum InvalidScope {
    #[error(
        "scope region {0:?} is not valid: use 1–63 letters, digits, '-', '_', '.' or '/', e.g. eu-west"
    )]
    Region(String),
    #[error(
        "scope service prefix {0:?} is not valid: use 1–63 letters, digits, '-', '_', '.' or '/', e.g. crm"
    )]
    Prefix(String),
}

/// The scope of `regions` and service-name `prefixes` (both empty: the
/// whole fleet). Names follow the region and label rule
/// (`deploy::units::is_label_part`); duplicates collapse.
pub fn scope_from_lists(regions: &[String], prefixes: &[String]) -> Result<Scope, InvalidScope> {
    let is_label_part = crate::deploy::units::is_label_part;
    if let Some(bad) = regions.iter().find(|r| !is_label_part(r)) {
        return Err(InvalidScope::Region(bad.clone()));
    }
    if let Some(bad) = prefixes.iter().find(|p| !is_label_part(p)) {
        return Err(InvalidScope::Prefix(bad.clone()));
    }
    Ok(Scope {
        regions: regions.iter().cloned().collect::<BTreeSet<_>>(),
        service_prefixes: prefixes.iter().cloned().collect::<BTreeSet<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    #[test]
    fn user_names() {
        for good in ["alice", "j.doe", "ops_team-2", "a", &"x".repeat(64)] {
            assert_eq!(check_user_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "Alice",
            "al ice",
            "alice@example.com",
            "al/ice",
            "ålice",
            &"x".repeat(65),
        ] {
            assert_eq!(
                check_user_name(bad),
                Err(InvalidUserName(bad.to_owned())),
                "{bad}"
            );
        }
        let message = InvalidUserName("Bob".into()).to_string();
        assert!(
            message.contains("lowercase") && message.contains("1–64"),
            "{message}"
        );
    }

    const MIN: i64 = 60_000;

    #[test]
    fn lockout_after_five_failures_within_the_window() {
        let now = 100 * MIN;
        let recent = |minutes_ago: &[i64]| -> Vec<i64> {
            minutes_ago.iter().map(|m| now - m * MIN).collect()
        };
        let table: &[(&[i64], Option<i64>, &str)] = &[
            (&[], None, "no failures"),
            (&[4, 3, 2, 1], None, "four failures do not lock"),
            (
                &[5, 4, 3, 2, 1],
                Some(now + 14 * MIN),
                "five lock until 15 min after the last",
            ),
            (
                &[1, 2, 3, 4, 5],
                Some(now + 14 * MIN),
                "order does not matter",
            ),
            (
                &[16, 10, 5, 2, 1],
                Some(now + 14 * MIN),
                "exactly 15 minutes apart still counts",
            ),
            (&[17, 10, 5, 2, 1], None, "spread over more than 15 minutes"),
            (
                &[29, 28, 27, 26, 16],
                None,
                "locked, but the lockout is over",
            ),
            (&[29, 28, 27, 26, 15], None, "the lockout ends exactly now"),
            (
                &[29, 28, 27, 26, 14],
                Some(now + MIN),
                "a minute of the lockout left",
            ),
            (
                &[40, 39, 38, 37, 36, 20, 1],
                None,
                "an old lockout and two new failures",
            ),
            (
                &[9, 8, 7, 6, 5, 4, 3, 2],
                Some(now + 13 * MIN),
                "more than five: counted from the latest run",
            ),
        ];
        for (minutes_ago, expected, why) in table {
            assert_eq!(locked_until(&recent(minutes_ago), now), *expected, "{why}");
        }
    }

    #[test]
    fn failures_older_than_the_lookback_cannot_lock() {
        let now = 100 * MIN;
        let oldest_that_matters = now - FAILURE_LOOKBACK_MS;
        let failures: Vec<i64> = (0..5)
            .map(|i| oldest_that_matters + i * FAILURE_WINDOW_MS / 4)
            .collect();
        assert_eq!(locked_until(&failures, now), None);
        let failures: Vec<i64> = failures.iter().map(|t| t + 1).collect();
        assert_eq!(locked_until(&failures, now), Some(now + 1));
    }

    #[test]
    fn session_lifetimes() {
        assert_eq!(session_ttl_seconds(0), Ok(12 * 3600));
        assert_eq!(session_ttl_seconds(60), Ok(60));
        assert_eq!(session_ttl_seconds(MAX_SESSION_TTL_SECONDS), Ok(7 * 86_400));
        assert_eq!(
            session_ttl_seconds(MAX_SESSION_TTL_SECONDS + 1),
            Err(SessionTooLong(MAX_SESSION_TTL_SECONDS + 1))
        );
        assert_eq!(session_ttl_seconds(u64::MAX), Err(SessionTooLong(u64::MAX)));
    }

    fn principal(kind: PrincipalKind, name: &str, role: Role, scope: Scope) -> Principal {
        Principal {
            kind,
            token_id: "t".into(),
            name: name.into(),
            role,
            scope,
        }
    }

    #[test]
    fn who_may_change_whose_password() {
        use PrincipalKind::{Token, User};
        let eu = Scope {
            regions: ["eu-west".to_owned()].into(),
            service_prefixes: BTreeSet::new(),
        };
        let all = Scope::default;
        let table = [
            (
                User,
                "root",
                Role::Admin,
                all(),
                "bob",
                Ok(PasswordChange::Reset),
            ),
            (
                User,
                "bob",
                Role::Admin,
                all(),
                "bob",
                Ok(PasswordChange::Reset),
            ),
            (
                Token,
                "ci",
                Role::Admin,
                all(),
                "bob",
                Ok(PasswordChange::Reset),
            ),
            (
                User,
                "bob",
                Role::Viewer,
                all(),
                "bob",
                Ok(PasswordChange::Own),
            ),
            (
                User,
                "bob",
                Role::Operator,
                all(),
                "bob",
                Ok(PasswordChange::Own),
            ),
            // A scoped admin may not manage users, only change their own.
            (
                User,
                "bob",
                Role::Admin,
                eu.clone(),
                "bob",
                Ok(PasswordChange::Own),
            ),
            (User, "bob", Role::Admin, eu, "carol", Err(())),
            (User, "bob", Role::Operator, all(), "carol", Err(())),
            // A token named like a user is not that user.
            (Token, "bob", Role::Viewer, all(), "bob", Err(())),
        ];
        for (kind, name, role, scope, target, expected) in table {
            let caller = principal(kind, name, role, scope);
            assert_eq!(
                password_change(&caller, target).map_err(|_| ()),
                expected,
                "{} ({role}) changing {target}'s password",
                caller.actor()
            );
        }
        let denied = password_change(
            &principal(User, "bob", Role::Operator, Scope::default()),
            "carol",
        )
        .unwrap_err();
        assert!(denied.to_string().contains("manage users"), "{denied}");
    }

    #[test]
    fn scopes_from_lists() {
        let strings = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(scope_from_lists(&[], &[]), Ok(Scope::default()));
        let scope = scope_from_lists(
            &strings(&["eu-west", "eu-west", "us-east"]),
            &strings(&["crm"]),
        )
        .unwrap();
        assert_eq!(scope.regions.len(), 2);
        assert!(scope.allows_name("crm-web") && !scope.allows_name("billing"));
        assert_eq!(
            scope_from_lists(&strings(&["eu west"]), &[]),
            Err(InvalidScope::Region("eu west".into()))
        );
        assert_eq!(
            scope_from_lists(&[], &strings(&[""])),
            Err(InvalidScope::Prefix(String::new()))
        );
        assert_eq!(
            scope_from_lists(&[], &strings(&["crm", "bad prefix!"])),
            Err(InvalidScope::Prefix("bad prefix!".into()))
        );
    }
}
