//! `UserService` and `SessionService`: people who log in with a password
//! (adding, removing, listing them, changing passwords) and logging in and
//! out for a session token. The rules are `users` and `passwords`; this is
//! the adapter that audits, stores and answers.
//!
//! A login session is a row of `api_tokens` with the user's id: it acts with
//! the user's current role and scope (`ControlPlane::authenticate`).

use crate::audit::AuditEntry;
use crate::auth::{Action, PrincipalKind, Role, Scope, Target};
use crate::clock::format_ms;
use crate::grpc::tokens::{TokenGrant, mint_token, role_wire};
use crate::grpc::{caller, principal, source_of, store_status};
use crate::passwords;
use crate::state::ControlPlane;
use crate::store::{StoreError, UserRow};
use crate::users::{self as rules, PasswordChange};
use argosy_proto::v1::{
    self as pb, session_service_server::SessionService, user_service_server::UserService,
};
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct UserApi {
    pub cp: Arc<ControlPlane>,
}

pub struct SessionApi {
    pub cp: Arc<ControlPlane>,
}

/// The one answer to a failed login: it never says whether the name or the
/// password was wrong.
const WRONG_CREDENTIALS: &str = "wrong user name or password";

pub(crate) fn scope_wire(scope: &Scope) -> pb::Scope {
    pb::Scope {
        regions: scope.regions.iter().cloned().collect(),
        service_prefixes: scope.service_prefixes.iter().cloned().collect(),
    }
}

/// A scope from the wire (unset: the whole fleet), validated.
pub(crate) fn scope_from_wire(scope: Option<pb::Scope>) -> Result<Scope, Status> {
    let scope = scope.unwrap_or_default();
    rules::scope_from_lists(&scope.regions, &scope.service_prefixes)
        .map_err(|invalid| Status::invalid_argument(invalid.to_string()))
}

pub(crate) fn role_from_wire(role: i32) -> Result<Role, Status> {
    match pb::Role::try_from(role) {
        Ok(pb::Role::Admin) => Ok(Role::Admin),
        Ok(pb::Role::Operator) => Ok(Role::Operator),
        Ok(pb::Role::Viewer) => Ok(Role::Viewer),
        _ => Err(Status::invalid_argument(
            "role must be admin, operator or viewer",
        )),
    }
}

pub(crate) fn kind_wire(kind: PrincipalKind) -> pb::PrincipalKind {
    match kind {
        PrincipalKind::User => pb::PrincipalKind::User,
        PrincipalKind::Token => pb::PrincipalKind::Token,
    }
}

fn user_wire(row: &UserRow) -> pb::User {
    let role = row
        .role
        .parse::<Role>()
        .map_or(pb::Role::Unspecified, role_wire);
    pb::User {
        name: row.name.clone(),
        role: role as i32,
        scope: Some(scope_wire(&Scope::from_json(&row.scope_json))),
        created_at_ms: row.created_at_ms,
        created_by: row.created_by.clone(),
        updated_at_ms: row.updated_at_ms,
        password_changed_at_ms: row.password_changed_at_ms,
    }
}

fn no_such_user(name: &str) -> Status {
    Status::not_found(format!(
        "no user named {name:?}; `argosy user list` shows them"
    ))
}

/// Hashes a new password on a blocking thread (argon2id is slow on purpose).
async fn hash_password(password: String) -> Result<String, Status> {
    tokio::task::spawn_blocking(move || passwords::hash_password(&password))
        .await
        .map_err(|e| Status::internal(format!("the password hashing task failed: {e}")))?
        .map_err(|e| match e {
            passwords::PasswordError::Hash(_) => Status::internal(e.to_string()),
            rule => Status::invalid_argument(rule.to_string()),
        })
}

/// Checks a password on a blocking thread; `None` (no such user) costs the
/// same as a wrong password.
async fn verify_password(password: String, stored: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || passwords::verify_password(&password, stored.as_deref()))
        .await
        .unwrap_or(false)
}

impl UserApi {
    async fn add(&self, actor: &str, request: pb::AddUserRequest) -> Result<pb::User, Status> {
        rules::check_user_name(&request.name)
            .map_err(|invalid| Status::invalid_argument(invalid.to_string()))?;
        let role = role_from_wire(request.role)?;
        let scope = scope_from_wire(request.scope)?;
        let password_hash = hash_password(request.password).await?;
        let now = self.cp.now_ms();
        let row = UserRow {
            id: format!("u-{}", crate::secrets::random_id(16)),
            name: request.name,
            password_hash,
            role: role.as_str().to_owned(),
            scope_json: scope.to_json(),
            created_at_ms: now,
            created_by: actor.to_owned(),
            updated_at_ms: now,
            password_changed_at_ms: now,
        };
        self.cp.store.insert_user(&row).await.map_err(|e| match e {
            StoreError::AlreadyExists { .. } => Status::already_exists(format!(
                "a user named {:?} already exists; choose another name, or `argosy user passwd {}` to reset their password",
                row.name, row.name
            )),
            other => store_status(other),
        })?;
        tracing::info!(user = row.name, role = %role, %scope, by = actor, "user added");
        Ok(user_wire(&row))
    }

    async fn set_password(
        &self,
        name: &str,
        change: PasswordChange,
        session_in_use: &str,
        request: pb::SetPasswordRequest,
    ) -> Result<pb::User, Status> {
        let user = self
            .cp
            .store
            .user_by_name(name)
            .await
            .map_err(store_status)?
            .ok_or_else(|| no_such_user(name))?;
        if change == PasswordChange::Own {
            // The current password proves it is the person, not just their
            // session; guessing it counts towards the login lockout.
            refuse_if_locked(&self.cp, name).await?;
            if !verify_password(request.current_password, Some(user.password_hash)).await {
                self.cp
                    .store
                    .record_login_failure(name, self.cp.now_ms())
                    .await
                    .map_err(store_status)?;
                return Err(Status::permission_denied(
                    "the current password is not right; give your current password to change it, or ask an admin to reset it",
                ));
            }
        }
        let password_hash = hash_password(request.new_password).await?;
        let updated = self
            .cp
            .store
            .set_user_password(name, &password_hash, self.cp.now_ms(), Some(session_in_use))
            .await
            .map_err(store_status)?
            .ok_or_else(|| no_such_user(name))?;
        // A new password lifts a lockout.
        self.cp
            .store
            .clear_login_failures(name)
            .await
            .map_err(store_status)?;
        Ok(user_wire(&updated))
    }
}

#[tonic::async_trait]
impl UserService for UserApi {
    async fn add_user(
        &self,
        request: Request<pb::AddUserRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let name = request.get_ref().name.clone();
        let call = caller(&self.cp, &request)
            .await?
            .change(
                &self.cp,
                Action::ManageUsers,
                Target::Global,
                "user.add",
                &name,
            )
            .await?;
        call.run(&self.cp, async |principal| {
            self.add(&principal.actor(), request.into_inner()).await
        })
        .await
    }

    async fn remove_user(
        &self,
        request: Request<pb::RemoveUserRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let name = request.get_ref().name.clone();
        let call = caller(&self.cp, &request)
            .await?
            .change(
                &self.cp,
                Action::ManageUsers,
                Target::Global,
                "user.remove",
                &name,
            )
            .await?;
        call.run(&self.cp, async |principal| {
            let result = self
                .cp
                .store
                .remove_user(&name, self.cp.now_ms())
                .await
                .map_err(store_status)
                .and_then(|removed| removed.ok_or_else(|| no_such_user(&name)));
            if result.is_ok() {
                tracing::info!(
                    user = name,
                    by = principal.actor(),
                    "user removed, sessions ended"
                );
            }
            result.map(|row| user_wire(&row))
        })
        .await
    }

    async fn set_password(
        &self,
        request: Request<pb::SetPasswordRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let caller = caller(&self.cp, &request).await?;
        let me = caller.principal();
        let name = match request.get_ref().name.as_str() {
            "" if me.kind == PrincipalKind::User => me.name.clone(),
            "" => {
                return Err(Status::invalid_argument(format!(
                    "{} is an API token, which has no password: name the user whose password to reset",
                    me.actor()
                )));
            }
            name => name.to_owned(),
        };
        let session_in_use = me.token_id.clone();
        // Admins reset anyone's password; a user's own needs only being that
        // user (ManageOwnAccount, which every role has). Anyone
        // else is refused by the user-management check, and audited.
        let (change, action) = match rules::password_change(me, &name) {
            Ok(PasswordChange::Own) => (PasswordChange::Own, Action::ManageOwnAccount),
            Ok(PasswordChange::Reset) | Err(_) => (PasswordChange::Reset, Action::ManageUsers),
        };
        let call = caller
            .change(&self.cp, action, Target::Global, "user.passwd", &name)
            .await?;
        call.run(&self.cp, async |principal| {
            let result = self
                .set_password(&name, change, &session_in_use, request.into_inner())
                .await;
            if result.is_ok() {
                tracing::info!(
                    user = name,
                    by = principal.actor(),
                    "password changed, other sessions ended"
                );
            }
            result
        })
        .await
    }

    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        principal(&self.cp, &request, Action::ManageUsers).await?;
        let users = self.cp.store.list_users().await.map_err(store_status)?;
        Ok(Response::new(pb::ListUsersResponse {
            users: users.iter().map(user_wire).collect(),
        }))
    }
}

/// Refuses a login (or a password check) for `name` while its failed
/// logins lock it.
async fn refuse_if_locked(cp: &ControlPlane, name: &str) -> Result<(), Status> {
    let now = cp.now_ms();
    let failures = cp
        .store
        .login_failures_since(name, now - rules::FAILURE_LOOKBACK_MS)
        .await
        .map_err(store_status)?;
    match rules::locked_until(&failures, now) {
        None => Ok(()),
        Some(until) => Err(Status::resource_exhausted(format!(
            "too many failed logins for {name:?}: logins for this name are refused until {} ({} failures within 15 minutes lock it for 15 minutes); try again then, or ask an admin to reset the password",
            format_ms(until),
            rules::MAX_FAILED_LOGINS
        ))),
    }
}

impl SessionApi {
    /// Records a login attempt in the audit log.
    async fn audit(
        &self,
        source: &str,
        actor: String,
        name: &str,
        outcome: String,
    ) -> Result<(), Status> {
        self.cp
            .audit
            .record(AuditEntry {
                actor,
                source: source.to_owned(),
                action: "user.login".to_owned(),
                target: name.to_owned(),
                outcome,
            })
            .await
            .map(|_| ())
            .map_err(|error| Status::unavailable(error.to_string()))
    }

    /// Refuses a login attempt, audited (a refusal stands even when its
    /// record cannot be written).
    async fn deny(&self, source: &str, name: &str, status: Status) -> Status {
        let outcome = format!("denied: {}", status.message());
        let _ = self
            .audit(source, "anonymous".to_owned(), name, outcome)
            .await;
        status
    }

    async fn login(
        &self,
        source: &str,
        request: pb::LoginRequest,
    ) -> Result<pb::LoginResponse, Status> {
        let name = request.username;
        let ttl_seconds = rules::session_ttl_seconds(request.ttl_seconds)
            .map_err(|too_long| Status::invalid_argument(too_long.to_string()))?;
        let wrong =
            || Status::unauthenticated(format!("{WRONG_CREDENTIALS}; check both and try again"));
        if rules::check_user_name(&name).is_err() {
            // No such user can exist; refuse after the same work as for any
            // other name, and keep junk names out of the failure table.
            verify_password(request.password, None).await;
            return Err(self.deny(source, &name, wrong()).await);
        }
        if let Err(locked) = refuse_if_locked(&self.cp, &name).await {
            return Err(self.deny(source, &name, locked).await);
        }
        let user = self
            .cp
            .store
            .user_by_name(&name)
            .await
            .map_err(store_status)?;
        let stored = user.as_ref().map(|u| u.password_hash.clone());
        // Checked whether or not the user exists, so both cost the same.
        let matches = verify_password(request.password, stored).await;
        let user = match user {
            Some(user) if matches => user,
            _ => {
                self.cp
                    .store
                    .record_login_failure(&name, self.cp.now_ms())
                    .await
                    .map_err(store_status)?;
                return Err(self.deny(source, &name, wrong()).await);
            }
        };
        // Fail closed: no session without its audit record.
        self.audit(source, format!("user:{name}"), &name, "ok".to_owned())
            .await?;
        self.cp
            .store
            .clear_login_failures(&name)
            .await
            .map_err(store_status)?;
        let role: Role = user
            .role
            .parse()
            .map_err(|_| Status::internal(format!("the stored role of {name:?} is damaged")))?;
        let scope = Scope::from_json(&user.scope_json);
        let created_by = format!("user:{name}");
        let grant = TokenGrant {
            name: &name,
            role,
            scope: &scope,
            user_id: Some(&user.id),
            ttl_seconds,
            created_by: &created_by,
        };
        let (row, token) = mint_token(&self.cp.store, self.cp.now_ms(), grant)
            .await
            .map_err(store_status)?;
        tracing::info!(user = name, source, session = row.id, "user logged in");
        Ok(pb::LoginResponse {
            token,
            token_id: row.id,
            expires_at_ms: row.expires_at_ms.unwrap_or(0),
            username: name,
            role: role_wire(role) as i32,
            scope: Some(scope_wire(&scope)),
        })
    }
}

#[tonic::async_trait]
impl SessionService for SessionApi {
    async fn login(
        &self,
        request: Request<pb::LoginRequest>,
    ) -> Result<Response<pb::LoginResponse>, Status> {
        let source = source_of(&request);
        self.login(&source, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn logout(
        &self,
        request: Request<pb::LogoutRequest>,
    ) -> Result<Response<pb::LogoutResponse>, Status> {
        let caller = caller(&self.cp, &request).await?;
        let me = caller.principal();
        if me.kind != PrincipalKind::User {
            return Err(Status::failed_precondition(format!(
                "{} is an API token, not a login session; revoke it with `argosy token revoke {}`",
                me.actor(),
                me.token_id
            )));
        }
        let session = me.token_id.clone();
        // Ending one's own session needs only being its user.
        let call = caller
            .change(
                &self.cp,
                Action::ManageOwnAccount,
                Target::Global,
                "user.logout",
                &session,
            )
            .await?;
        call.run(&self.cp, async |_| {
            self.cp
                .store
                .revoke_api_token(&session, self.cp.now_ms())
                .await
                .map_err(store_status)
                .map(|_| pb::LogoutResponse {
                    token_id: session.clone(),
                })
        })
        .await
    }
}
