//! Who may do what: roles, the actions of the API, and the one pure
//! authorization decision every gRPC and HTTP handler goes through.

use std::fmt;
use std::str::FromStr;

/// The role an API token carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything.
    Admin,
    /// Operate the fleet: read everything, deploy, revoke hosts. No
    /// token or user management.
    Operator,
    /// Read-only.
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
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
}

impl Action {
    pub const ALL: [Action; 9] = [
        Action::ReadFleet,
        Action::ReadDeployments,
        Action::ReadLogs,
        Action::Deploy,
        Action::ReadMetrics,
        Action::RevokeHost,
        Action::ManageJoinTokens,
        Action::ManageApiTokens,
        Action::WhoAmI,
    ];

    fn describe(self) -> &'static str {
        match self {
            Action::ReadFleet => "read the fleet",
            Action::ReadDeployments => "read services and deployments",
            Action::ReadLogs => "read container logs (they may hold secrets)",
            Action::Deploy => "deploy, roll back, promote or pause services",
            Action::ReadMetrics => "read metrics",
            Action::RevokeHost => "revoke hosts",
            Action::ManageJoinTokens => "manage join tokens",
            Action::ManageApiTokens => "manage API tokens",
            Action::WhoAmI => "ask who it is",
        }
    }

    /// The least powerful role allowed to take this action.
    fn least_role(self) -> Role {
        match self {
            Action::ReadFleet | Action::ReadDeployments | Action::ReadMetrics | Action::WhoAmI => {
                Role::Viewer
            }
            Action::RevokeHost | Action::Deploy | Action::ReadLogs => Role::Operator,
            Action::ManageJoinTokens | Action::ManageApiTokens => Role::Admin,
        }
    }
}

/// The authenticated caller of an API request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub token_id: String,
    pub name: String,
    pub role: Role,
}

/// A refused action, with what to do about it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "token {token_name:?} has role {role}, which may not {action}; ask an admin for a token with role {needed} or higher"
)]
pub struct Denied {
    pub token_name: String,
    pub role: Role,
    pub action: &'static str,
    pub needed: Role,
}

fn rank(role: Role) -> u8 {
    match role {
        Role::Viewer => 0,
        Role::Operator => 1,
        Role::Admin => 2,
    }
}

/// Whether `principal` may take `action`.
pub fn authorize(principal: &Principal, action: Action) -> Result<(), Denied> {
    let needed = action.least_role();
    if rank(principal.role) >= rank(needed) {
        Ok(())
    } else {
        Err(Denied {
            token_name: principal.name.clone(),
            role: principal.role,
            action: action.describe(),
            needed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(role: Role) -> Principal {
        Principal {
            token_id: "id".into(),
            name: "ci".into(),
            role,
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
        ];
        assert_eq!(
            table.len(),
            Action::ALL.len(),
            "every action is in the table"
        );
        for (action, allowed) in table {
            for (role, expected) in [Role::Admin, Role::Operator, Role::Viewer]
                .iter()
                .zip(allowed)
            {
                assert_eq!(
                    authorize(&principal(*role), *action).is_ok(),
                    *expected,
                    "{role} {action:?}"
                );
            }
        }
    }

    #[test]
    fn denial_says_what_to_do() {
        let err = authorize(&principal(Role::Viewer), Action::RevokeHost).unwrap_err();
        assert_eq!(
            err.to_string(),
            "token \"ci\" has role viewer, which may not revoke hosts; ask an admin for a token with role operator or higher"
        );
    }

    #[test]
    fn roles_parse_and_print() {
        for role in [Role::Admin, Role::Operator, Role::Viewer] {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert_eq!("root".parse::<Role>(), Err(UnknownRole("root".into())));
    }
}
