//! Who may do what: roles, scopes, the actions of the API, and the one pure
//! authorization decision — (principal, action, target) → allow or deny —
//! every gRPC and HTTP handler goes through (via `grpc::Caller`).

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// The role a user or an API token carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything.
    Admin,
    /// Operate the fleet: read everything but secret values, deploy, write
    /// secrets, run backups, revoke hosts. No user, token or key management.
    Operator,
    /// Read-only, never secret values.
    Viewer,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Admin, Role::Operator, Role::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
        }
    }

    fn rank(self) -> u8 {
        match self {
            Role::Viewer => 0,
            Role::Operator => 1,
            Role::Admin => 2,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not admin, operator or viewer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown role {0:?}: use admin, operator or viewer")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "operator" => Ok(Role::Operator),
            "viewer" => Ok(Role::Viewer),
            other => Err(UnknownRole(other.to_owned())),
        }
    }
}

/// What part of the fleet a principal may touch. Empty sets mean no
/// restriction. Service-name prefixes also apply to secret names, so a
/// team scoped to `crm` manages `crm-web` and `crm/db-password`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub regions: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub service_prefixes: BTreeSet<String>,
}

impl Scope {
    pub fn is_unrestricted(&self) -> bool {
        self.regions.is_empty() && self.service_prefixes.is_empty()
    }

    pub fn allows_region(&self, region: &str) -> bool {
        self.regions.is_empty() || self.regions.contains(region)
    }

    /// Whether a service or secret name falls under one of the prefixes.
    pub fn allows_name(&self, name: &str) -> bool {
        self.service_prefixes.is_empty()
            || self.service_prefixes.iter().any(|p| name.starts_with(p))
    }

    /// Whether a service that may be placed in `regions` (empty: anywhere)
    /// stays inside the scope's regions.
    pub fn allows_placement(&self, regions: &[String]) -> bool {
        self.regions.is_empty()
            || (!regions.is_empty() && regions.iter().all(|r| self.regions.contains(r)))
    }

    /// The scope as JSON for the store (`{}` when unrestricted).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }

    /// Reads a stored scope; an unreadable one is the narrowest scope there
    /// is (no region), so a damaged row never widens access.
    pub fn from_json(text: &str) -> Scope {
        serde_json::from_str(text).unwrap_or_else(|_| Scope {
            regions: BTreeSet::from([String::new()]),
            service_prefixes: BTreeSet::new(),
        })
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_unrestricted() {
            return f.write_str("the whole fleet");
        }
        let mut parts = Vec::new();
        if !self.regions.is_empty() {
            let list: Vec<&str> = self.regions.iter().map(String::as_str).collect();
            parts.push(format!("regions {}", list.join(", ")));
        }
        if !self.service_prefixes.is_empty() {
            let list: Vec<String> = self
                .service_prefixes
                .iter()
                .map(|p| format!("{p}*"))
                .collect();
            parts.push(format!("names {}", list.join(", ")));
        }
        f.write_str(&parts.join(" and "))
    }
}

/// Everything the API lets a caller do, one variant per kind of call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    ReadFleet,
    ReadDeployments,
    ReadLogs,
    Deploy,
    ReadMetrics,
    RevokeHost,
    ManageJoinTokens,
    ManageApiTokens,
    WhoAmI,
    /// Secret names, versions and history — never values.
    ReadSecrets,
    /// Set, rotate and delete secrets (write-only: no reading back).
    WriteSecrets,
    /// Read a secret's value.
    RevealSecret,
    RotateMasterKey,
    ManageUsers,
    ReadAudit,
    ReadAlerts,
    ManageAlerts,
    /// Change one's own password or end one's own session.
    ManageOwnAccount,
    /// List and show policies (their modules and configurations hold no
    /// secret).
    ReadPolicies,
    /// Evaluate a policy on an input, with no side effect: people who
    /// deploy check their specs against the policies.
    TestPolicies,
    /// Add, replace, enable, disable and remove policies: they govern every
    /// deployment, so admins only.
    ManagePolicies,
    /// Backup policies, backups, jobs and their status.
    ReadBackups,
    /// Apply and remove backup policies; run, verify and restore backups
    /// into new targets.
    ManageBackups,
    /// Restore a backup over its live source.
    RestoreInPlace,
}

impl Action {
    pub const ALL: [Action; 24] = [
        Action::ReadFleet,
        Action::ReadDeployments,
        Action::ReadLogs,
        Action::Deploy,
        Action::ReadMetrics,
        Action::RevokeHost,
        Action::ManageJoinTokens,
        Action::ManageApiTokens,
        Action::WhoAmI,
        Action::ReadSecrets,
        Action::WriteSecrets,
        Action::RevealSecret,
        Action::RotateMasterKey,
        Action::ManageUsers,
        Action::ReadAudit,
        Action::ReadAlerts,
        Action::ManageAlerts,
        Action::ManageOwnAccount,
        Action::ReadPolicies,
        Action::TestPolicies,
        Action::ManagePolicies,
        Action::ReadBackups,
        Action::ManageBackups,
        Action::RestoreInPlace,
    ];

    pub fn describe(self) -> &'static str {
        match self {
            Action::ReadFleet => "read the fleet",
            Action::ReadDeployments => "read services and deployments",
            Action::ReadLogs => "read container logs (they may hold secrets)",
            Action::Deploy => "deploy, roll back, promote, pause, scale or stop services",
            Action::ReadMetrics => "read metrics",
            Action::RevokeHost => "revoke hosts",
            Action::ManageJoinTokens => "manage join tokens",
            Action::ManageApiTokens => "manage API tokens",
            Action::WhoAmI => "ask who it is",
            Action::ReadSecrets => "list secrets",
            Action::WriteSecrets => "set, rotate or delete secrets",
            Action::RevealSecret => "read secret values",
            Action::RotateMasterKey => "rotate the master key",
            Action::ManageUsers => "manage users",
            Action::ReadAudit => "read the audit log",
            Action::ReadAlerts => "read alerts",
            Action::ManageAlerts => "manage alert rules, silences and channels",
            Action::ManageOwnAccount => "change its own password or end its own session",
            Action::ReadPolicies => "read policies",
            Action::TestPolicies => "test policies",
            Action::ManagePolicies => "add, change or remove policies",
            Action::ReadBackups => "read backups",
            Action::ManageBackups => "manage backup policies and run, verify or restore backups",
            Action::RestoreInPlace => "restore a backup over its live source",
        }
    }

    /// The least powerful role allowed to take this action.
    pub fn least_role(self) -> Role {
        match self {
            Action::ReadFleet
            | Action::ReadDeployments
            | Action::ReadMetrics
            | Action::WhoAmI
            | Action::ReadSecrets
            | Action::ReadAlerts
            | Action::ReadBackups
            | Action::ReadPolicies
            | Action::ManageOwnAccount => Role::Viewer,
            Action::RevokeHost
            | Action::Deploy
            | Action::ReadLogs
            | Action::WriteSecrets
            | Action::ReadAudit
            | Action::TestPolicies
            | Action::ManageAlerts
            | Action::ManageBackups => Role::Operator,
            Action::ManageJoinTokens
            | Action::ManageApiTokens
            | Action::RevealSecret
            | Action::RotateMasterKey
            | Action::ManagePolicies
            | Action::ManageUsers
            | Action::RestoreInPlace => Role::Admin,
        }
    }

    /// Actions a scoped principal may take without a target: reads whose
    /// results the handler filters by scope, its own account, and the
    /// fleet-wide policies it is subject to (reading and testing them;
    /// changing them needs an unrestricted admin).
    fn filters_by_scope(self) -> bool {
        matches!(
            self,
            Action::ReadFleet
                | Action::ReadDeployments
                | Action::ReadMetrics
                | Action::WhoAmI
                | Action::ReadSecrets
                | Action::ReadAlerts
                | Action::ManageOwnAccount
                | Action::ReadPolicies
                | Action::TestPolicies
        )
    }
}

/// What an action is taken on, as far as scopes care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// Nothing in particular, or the whole fleet (listings, users, tokens,
    /// keys, the audit log).
    Global,
    /// A region, or a host in it.
    Region(&'a str),
    /// A service and the regions it may be placed in (empty: anywhere).
    Service {
        name: &'a str,
        regions: &'a [String],
    },
    Secret(&'a str),
}

impl fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Global => f.write_str("the whole fleet"),
            Target::Region(region) => write!(f, "region {region}"),
            Target::Service { name, regions: [] } => {
                write!(f, "service {name} (placed in any region)")
            }
            Target::Service { name, regions } => {
                write!(f, "service {name} (placed in {})", regions.join(", "))
            }
            Target::Secret(name) => write!(f, "secret {name}"),
        }
    }
}

/// Whether the principal is a person who logged in or an API token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    User,
    Token,
}

/// The authenticated caller of an API request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub kind: PrincipalKind,
    /// The id of the token the request came with (a user's session token
    /// for people).
    pub token_id: String,
    /// The user's or the token's name.
    pub name: String,
    pub role: Role,
    pub scope: Scope,
}

impl Principal {
    /// How the audit log and histories name this principal:
    /// `user:alice` or `token:ci`.
    pub fn actor(&self) -> String {
        match self.kind {
            PrincipalKind::User => format!("user:{}", self.name),
            PrincipalKind::Token => format!("token:{}", self.name),
        }
    }
}

/// A refused action, with what to do about it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Denied {
    #[error(
        "{actor} has role {role}, which may not {action}; ask an admin for role {needed} or higher"
    )]
    Role {
        actor: String,
        role: Role,
        action: &'static str,
        needed: Role,
    },
    #[error(
        "{actor} is limited to {scope}, which does not cover {target}; ask an admin for a wider scope"
    )]
    Scope {
        actor: String,
        scope: String,
        target: String,
    },
}

/// Whether `principal`'s role allows `action` anywhere (scope aside).
pub fn authorize_role(principal: &Principal, action: Action) -> Result<(), Denied> {
    let needed = action.least_role();
    if principal.role.rank() < needed.rank() {
        return Err(Denied::Role {
            actor: principal.actor(),
            role: principal.role,
            action: action.describe(),
            needed,
        });
    }
    Ok(())
}

/// Whether `principal` may take `action` on `target`.
pub fn authorize(principal: &Principal, action: Action, target: Target<'_>) -> Result<(), Denied> {
    authorize_role(principal, action)?;
    let scope = &principal.scope;
    let in_scope = match target {
        Target::Global => scope.is_unrestricted() || action.filters_by_scope(),
        Target::Region(region) => scope.allows_region(region),
        Target::Service { name, regions } => {
            scope.allows_name(name) && scope.allows_placement(regions)
        }
        Target::Secret(name) => scope.allows_name(name),
    };
    if in_scope {
        Ok(())
    } else {
        Err(Denied::Scope {
            actor: principal.actor(),
            scope: scope.to_string(),
            target: target.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(role: Role) -> Principal {
        Principal {
            kind: PrincipalKind::Token,
            token_id: "id".into(),
            name: "ci".into(),
            role,
            scope: Scope::default(),
        }
    }

    fn scoped(regions: &[&str], prefixes: &[&str]) -> Principal {
        Principal {
            scope: Scope {
                regions: regions.iter().map(|s| s.to_string()).collect(),
                service_prefixes: prefixes.iter().map(|s| s.to_string()).collect(),
            },
            ..principal(Role::Admin)
        }
    }

    #[test]
    fn every_role_against_every_action() {
        use Action::*;
        let table: &[(Action, [bool; 3])] = &[
            // admin, operator, viewer
            (ReadFleet, [true, true, true]),
            (ReadDeployments, [true, true, true]),
            (Deploy, [true, true, false]),
            (ReadLogs, [true, true, false]),
            (ReadMetrics, [true, true, true]),
            (WhoAmI, [true, true, true]),
            (RevokeHost, [true, true, false]),
            (ManageJoinTokens, [true, false, false]),
            (ManageApiTokens, [true, false, false]),
            (ReadSecrets, [true, true, true]),
            (WriteSecrets, [true, true, false]),
            (RevealSecret, [true, false, false]),
            (RotateMasterKey, [true, false, false]),
            (ManageUsers, [true, false, false]),
            (ReadAudit, [true, true, false]),
            (ReadAlerts, [true, true, true]),
            (ManageAlerts, [true, true, false]),
            (ManageOwnAccount, [true, true, true]),
            (ReadPolicies, [true, true, true]),
            (TestPolicies, [true, true, false]),
            (ManagePolicies, [true, false, false]),
            (ReadBackups, [true, true, true]),
            (ManageBackups, [true, true, false]),
            (RestoreInPlace, [true, false, false]),
        ];
        assert_eq!(
            table.len(),
            Action::ALL.len(),
            "every action is in the table"
        );
        for (action, allowed) in table {
            for (role, expected) in Role::ALL.iter().zip(allowed) {
                assert_eq!(
                    authorize(&principal(*role), *action, Target::Global).is_ok(),
                    *expected,
                    "{role} {action:?}"
                );
            }
        }
    }

    #[test]
    fn an_unrestricted_principal_reaches_every_target() {
        let admin = principal(Role::Admin);
        let regions = ["eu-west".to_owned()];
        for target in [
            Target::Global,
            Target::Region("us-east"),
            Target::Service {
                name: "web",
                regions: &[],
            },
            Target::Service {
                name: "web",
                regions: &regions,
            },
            Target::Secret("crm/db"),
        ] {
            for action in Action::ALL {
                assert!(
                    authorize(&admin, action, target).is_ok(),
                    "{action:?} {target}"
                );
            }
        }
    }

    #[test]
    fn region_scope_covers_its_regions_only() {
        let eu = scoped(&["eu-west"], &[]);
        assert!(authorize(&eu, Action::RevokeHost, Target::Region("eu-west")).is_ok());
        assert!(authorize(&eu, Action::RevokeHost, Target::Region("us-east")).is_err());
        let inside = ["eu-west".to_owned()];
        let straddling = ["eu-west".to_owned(), "us-east".to_owned()];
        let service = |regions| Target::Service {
            name: "web",
            regions,
        };
        assert!(authorize(&eu, Action::Deploy, service(&inside)).is_ok());
        assert!(authorize(&eu, Action::Deploy, service(&straddling)).is_err());
        // A service that may land anywhere could land outside the scope.
        assert!(authorize(&eu, Action::Deploy, service(&[])).is_err());
        // Secrets are not regional.
        assert!(authorize(&eu, Action::WriteSecrets, Target::Secret("any")).is_ok());
    }

    #[test]
    fn name_scope_covers_services_and_secrets_by_prefix() {
        let crm = scoped(&[], &["crm"]);
        let service = |name| Target::Service { name, regions: &[] };
        assert!(authorize(&crm, Action::Deploy, service("crm-web")).is_ok());
        assert!(authorize(&crm, Action::Deploy, service("billing")).is_err());
        assert!(authorize(&crm, Action::RevealSecret, Target::Secret("crm/db")).is_ok());
        assert!(authorize(&crm, Action::RevealSecret, Target::Secret("billing/db")).is_err());
        // Regions are not name-scoped.
        assert!(authorize(&crm, Action::RevokeHost, Target::Region("eu-west")).is_ok());
    }

    #[test]
    fn scoped_principals_may_list_but_not_act_on_the_whole_fleet() {
        let scoped = scoped(&["eu-west"], &["crm"]);
        for action in Action::ALL {
            let allowed = authorize(&scoped, action, Target::Global).is_ok();
            assert_eq!(allowed, action.filters_by_scope(), "{action:?}");
        }
        for action in [
            Action::ManageUsers,
            Action::ManageApiTokens,
            Action::RotateMasterKey,
            Action::ReadAudit,
            Action::ManagePolicies,
        ] {
            let err = authorize(&scoped, action, Target::Global).unwrap_err();
            assert!(matches!(err, Denied::Scope { .. }), "{action:?}");
        }
    }

    #[test]
    fn role_is_checked_before_scope() {
        let mut viewer = scoped(&["eu-west"], &[]);
        viewer.role = Role::Viewer;
        let err = authorize(&viewer, Action::RevokeHost, Target::Region("us-east")).unwrap_err();
        assert!(matches!(err, Denied::Role { .. }));
    }

    #[test]
    fn denials_say_what_to_do() {
        let err =
            authorize(&principal(Role::Viewer), Action::RevokeHost, Target::Global).unwrap_err();
        assert_eq!(
            err.to_string(),
            "token:ci has role viewer, which may not revoke hosts; ask an admin for role operator or higher"
        );
        let err = authorize(
            &scoped(&["eu-west"], &["crm"]),
            Action::Deploy,
            Target::Service {
                name: "billing",
                regions: &[],
            },
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "token:ci is limited to regions eu-west and names crm*, which does not cover service billing (placed in any region); ask an admin for a wider scope"
        );
    }

    #[test]
    fn a_damaged_scope_grants_nothing() {
        let scope = Scope::from_json("not json");
        assert!(!scope.allows_region("eu-west"));
        assert!(!scope.allows_placement(&["eu-west".to_owned()]));
        assert_eq!(Scope::from_json("{}"), Scope::default());
        let scope = Scope {
            regions: ["eu-west".to_owned()].into(),
            service_prefixes: ["crm".to_owned()].into(),
        };
        assert_eq!(Scope::from_json(&scope.to_json()), scope);
    }

    #[test]
    fn roles_parse_and_print() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert_eq!("root".parse::<Role>(), Err(UnknownRole("root".into())));
    }
}
