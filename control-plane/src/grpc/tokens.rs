//! `JoinTokenService` and `ApiTokenService`: minting, listing and revoking
//! the secrets hosts enroll with and people and automation call the API with.

use crate::auth::{Action, Role, Scope, Target};
use crate::grpc::users::{kind_wire, role_from_wire, scope_from_wire, scope_wire};
use crate::grpc::{begin, principal, store_status};
use crate::secrets;
use crate::state::ControlPlane;
use crate::store::{ApiTokenRow, JoinTokenRow};
use argosy_proto::join::JoinString;
use argosy_proto::v1::{
    self as pb, ApiToken, CreateApiTokenRequest, CreateApiTokenResponse, CreateJoinTokenRequest,
    CreateJoinTokenResponse, JoinToken, ListApiTokensRequest, ListApiTokensResponse,
    ListJoinTokensRequest, ListJoinTokensResponse, RevokeApiTokenRequest, RevokeJoinTokenRequest,
    WhoAmIRequest, WhoAmIResponse, api_token_service_server, join_token_service_server,
};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// Longest join-token lifetime: a week. Hosts enroll soon after a token is made.
pub const MAX_JOIN_TOKEN_TTL_SECONDS: u64 = 7 * 24 * 3600;

pub struct JoinTokenApi {
    pub cp: Arc<ControlPlane>,
}

pub struct ApiTokenApi {
    pub cp: Arc<ControlPlane>,
}

fn join_token_wire(row: JoinTokenRow) -> JoinToken {
    JoinToken {
        id: row.id,
        region: row.region,
        labels: row.labels.into_iter().collect(),
        created_at_ms: row.created_at_ms,
        expires_at_ms: row.expires_at_ms,
        max_uses: row.max_uses,
        uses: row.uses,
        revoked: row.revoked_at_ms.is_some(),
        created_by: row.created_by,
    }
}

pub(crate) fn role_wire(role: Role) -> pb::Role {
    match role {
        Role::Admin => pb::Role::Admin,
        Role::Operator => pb::Role::Operator,
        Role::Viewer => pb::Role::Viewer,
    }
}

fn api_token_wire(row: ApiTokenRow) -> ApiToken {
    let role = row
        .role
        .parse::<Role>()
        .map(role_wire)
        .unwrap_or(pb::Role::Unspecified);
    ApiToken {
        id: row.id,
        role: role as i32,
        created_at_ms: row.created_at_ms,
        expires_at_ms: row.expires_at_ms.unwrap_or(0),
        revoked: row.revoked_at_ms.is_some(),
        created_by: row.created_by,
        last_used_ms: row.last_used_ms.unwrap_or(0),
        scope: Some(scope_wire(&Scope::from_json(&row.scope_json))),
        // A session is named after its user.
        user: row
            .user_id
            .as_ref()
            .map_or_else(String::new, |_| row.name.clone()),
        name: row.name,
    }
}

/// Checks a region or label part: lowercase letters, digits, `-`, `_`, `.`, `/`.
pub fn valid_name(field: &str, value: &str) -> Result<(), Status> {
    if crate::deploy::units::is_label_part(value) {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!(
            "{field} {value:?} is not valid: use 1–63 letters, digits, '-', '_', '.' or '/'"
        )))
    }
}

/// Creates a join token and its join string (the secret shows only here).
pub async fn create_join_token(
    cp: &ControlPlane,
    created_by: &str,
    request: CreateJoinTokenRequest,
) -> Result<CreateJoinTokenResponse, Status> {
    let region = if request.region.is_empty() {
        "default".to_owned()
    } else {
        request.region
    };
    valid_name("region", &region)?;
    for (key, value) in &request.labels {
        valid_name("label key", key)?;
        valid_name(&format!("label {key}"), value)?;
    }
    let ttl = if request.ttl_seconds == 0 {
        3600
    } else {
        request.ttl_seconds
    };
    if ttl > MAX_JOIN_TOKEN_TTL_SECONDS {
        return Err(Status::invalid_argument(format!(
            "ttl {ttl}s is longer than the 7-day maximum for join tokens; make a new token when more hosts come"
        )));
    }
    let now = cp.now_ms();
    let minted = secrets::mint_join_token();
    let row = JoinTokenRow {
        id: minted.id.clone(),
        secret_hash: minted.secret_hash.clone(),
        region,
        labels: request.labels.into_iter().collect(),
        created_at_ms: now,
        expires_at_ms: now + i64::try_from(ttl).unwrap_or(i64::MAX / 2) * 1000,
        max_uses: request.max_uses,
        uses: 0,
        revoked_at_ms: None,
        created_by: created_by.to_owned(),
    };
    cp.store
        .insert_join_token(&row)
        .await
        .map_err(store_status)?;
    let join = JoinString {
        address: cp.settings.advertise_grpc.clone(),
        token: minted.text,
        ca_fingerprint: cp.ca.fingerprint(),
    };
    tracing::info!(
        token_id = row.id,
        region = row.region,
        by = created_by,
        "join token created"
    );
    Ok(CreateJoinTokenResponse {
        token: Some(join_token_wire(row)),
        install_command: format!(
            "curl -fsSL {}/install.sh | sh -s -- --join '{join}'",
            cp.settings.public_http_url
        ),
        join_string: join.to_string(),
    })
}

#[tonic::async_trait]
impl join_token_service_server::JoinTokenService for JoinTokenApi {
    async fn create_join_token(
        &self,
        request: Request<CreateJoinTokenRequest>,
    ) -> Result<Response<CreateJoinTokenResponse>, Status> {
        let region = match request.get_ref().region.as_str() {
            "" => "default".to_owned(),
            region => region.to_owned(),
        };
        let call = begin(
            &self.cp,
            &request,
            Action::ManageJoinTokens,
            Target::Region(&region),
            "join_token.create",
            &region,
        )
        .await?;
        call.run(&self.cp, async |principal| {
            create_join_token(&self.cp, &principal.actor(), request.into_inner()).await
        })
        .await
    }

    async fn list_join_tokens(
        &self,
        request: Request<ListJoinTokensRequest>,
    ) -> Result<Response<ListJoinTokensResponse>, Status> {
        principal(&self.cp, &request, Action::ManageJoinTokens).await?;
        let tokens = self
            .cp
            .store
            .list_join_tokens()
            .await
            .map_err(store_status)?;
        Ok(Response::new(ListJoinTokensResponse {
            tokens: tokens.into_iter().map(join_token_wire).collect(),
        }))
    }

    async fn revoke_join_token(
        &self,
        request: Request<RevokeJoinTokenRequest>,
    ) -> Result<Response<JoinToken>, Status> {
        let id = &request.get_ref().id;
        let call = begin(
            &self.cp,
            &request,
            Action::ManageJoinTokens,
            Target::Global,
            "join_token.revoke",
            id,
        )
        .await?;
        call.run(&self.cp, async |principal| {
            let result = self
                .cp
                .store
                .revoke_join_token(id, self.cp.now_ms())
                .await
                .map_err(store_status)
                .and_then(|row| {
                    row.ok_or_else(|| {
                        Status::not_found(format!(
                            "no join token with id {id:?}; `argosy join-token list` shows them"
                        ))
                    })
                });
            if result.is_ok() {
                tracing::info!(token_id = id, by = principal.actor(), "join token revoked");
            }
            result.map(join_token_wire)
        })
        .await
    }
}

/// What a new API token or login session grants.
pub struct TokenGrant<'a> {
    pub name: &'a str,
    pub role: Role,
    pub scope: &'a Scope,
    /// The user a login session acts as; `None` for an API token.
    pub user_id: Option<&'a str>,
    /// 0: it never expires.
    pub ttl_seconds: u64,
    /// `user:alice`, `token:ci` or `bootstrap`.
    pub created_by: &'a str,
}

/// Mints a bearer token (an API token or a login session) and stores its
/// hash. Returns the row and the secret text, which is shown once.
pub async fn mint_token(
    store: &crate::store::Store,
    now: i64,
    grant: TokenGrant<'_>,
) -> Result<(ApiTokenRow, String), crate::store::StoreError> {
    let minted = secrets::mint_api_token();
    let ttl_seconds = grant.ttl_seconds;
    let row = ApiTokenRow {
        id: minted.id,
        name: grant.name.to_owned(),
        role: grant.role.as_str().to_owned(),
        secret_hash: minted.secret_hash,
        created_at_ms: now,
        expires_at_ms: (ttl_seconds > 0)
            .then(|| now + i64::try_from(ttl_seconds).unwrap_or(i64::MAX / 2_000) * 1000),
        revoked_at_ms: None,
        created_by: grant.created_by.to_owned(),
        last_used_ms: None,
        scope_json: grant.scope.to_json(),
        user_id: grant.user_id.map(str::to_owned),
    };
    store.insert_api_token(&row).await?;
    Ok((row, minted.text))
}

/// Mints an API token for the whole fleet (the first admin token, `argosy
/// dev`, `bootstrap-token`).
pub async fn mint_api_token(
    store: &crate::store::Store,
    now: i64,
    name: &str,
    role: Role,
    ttl_seconds: u64,
    created_by: &str,
) -> Result<(ApiTokenRow, String), crate::store::StoreError> {
    let grant = TokenGrant {
        name,
        role,
        scope: &Scope::default(),
        user_id: None,
        ttl_seconds,
        created_by,
    };
    mint_token(store, now, grant).await
}

#[tonic::async_trait]
impl api_token_service_server::ApiTokenService for ApiTokenApi {
    async fn create_api_token(
        &self,
        request: Request<CreateApiTokenRequest>,
    ) -> Result<Response<CreateApiTokenResponse>, Status> {
        let name = request.get_ref().name.trim().to_owned();
        let call = begin(
            &self.cp,
            &request,
            Action::ManageApiTokens,
            Target::Global,
            "api_token.create",
            &name,
        )
        .await?;
        call.run(&self.cp, async |principal| {
            self.create(&principal.actor(), request.into_inner()).await
        })
        .await
    }

    async fn list_api_tokens(
        &self,
        request: Request<ListApiTokensRequest>,
    ) -> Result<Response<ListApiTokensResponse>, Status> {
        principal(&self.cp, &request, Action::ManageApiTokens).await?;
        let tokens = self
            .cp
            .store
            .list_api_tokens()
            .await
            .map_err(store_status)?;
        Ok(Response::new(ListApiTokensResponse {
            tokens: tokens.into_iter().map(api_token_wire).collect(),
        }))
    }

    async fn revoke_api_token(
        &self,
        request: Request<RevokeApiTokenRequest>,
    ) -> Result<Response<ApiToken>, Status> {
        let id = &request.get_ref().id;
        let call = begin(
            &self.cp,
            &request,
            Action::ManageApiTokens,
            Target::Global,
            "api_token.revoke",
            id,
        )
        .await?;
        call.run(&self.cp, async |principal| {
            let result = self
                .cp
                .store
                .revoke_api_token(id, self.cp.now_ms())
                .await
                .map_err(store_status)
                .and_then(|row| {
                    row.ok_or_else(|| {
                        Status::not_found(format!(
                            "no API token with id {id:?}; `argosy token list` shows them"
                        ))
                    })
                });
            if result.is_ok() {
                tracing::info!(token_id = id, by = principal.actor(), "API token revoked");
            }
            result.map(api_token_wire)
        })
        .await
    }

    async fn who_am_i(
        &self,
        request: Request<WhoAmIRequest>,
    ) -> Result<Response<WhoAmIResponse>, Status> {
        let who = principal(&self.cp, &request, Action::WhoAmI).await?;
        Ok(Response::new(WhoAmIResponse {
            kind: kind_wire(who.kind) as i32,
            scope: Some(scope_wire(&who.scope)),
            token_id: who.token_id,
            name: who.name,
            role: role_wire(who.role) as i32,
        }))
    }
}

impl ApiTokenApi {
    async fn create(
        &self,
        actor: &str,
        request: CreateApiTokenRequest,
    ) -> Result<CreateApiTokenResponse, Status> {
        let role = role_from_wire(request.role)?;
        let scope = scope_from_wire(request.scope)?;
        let name = request.name.trim();
        if name.is_empty() || name.len() > 100 {
            return Err(Status::invalid_argument(
                "name must be 1–100 characters, e.g. the person or pipeline using the token",
            ));
        }
        let grant = TokenGrant {
            name,
            role,
            scope: &scope,
            user_id: None,
            ttl_seconds: request.ttl_seconds,
            created_by: actor,
        };
        let (row, secret) = mint_token(&self.cp.store, self.cp.now_ms(), grant)
            .await
            .map_err(store_status)?;
        tracing::info!(token_id = row.id, role = %role, %scope, by = actor, "API token created");
        Ok(CreateApiTokenResponse {
            token: Some(api_token_wire(row)),
            secret,
        })
    }
}
