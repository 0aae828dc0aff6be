//! `/api/v1/routes`: routed services and where each region's ingresses
//! send their requests, over the gRPC `RoutingService`.

use super::{ApiError, grpc_request};
use crate::dto::{RoutesJson, ServiceRoutesJson};
use crate::grpc::routing::RoutingApi;
use crate::state::ControlPlane;
use argosy_proto::v1::{self as pb, routing_service_server::RoutingService};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use std::sync::Arc;

pub(super) async fn list(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
) -> Result<Json<RoutesJson>, ApiError> {
    let routes = RoutingApi { cp }
        .list_routes(grpc_request(&headers, pb::ListRoutesRequest {}))
        .await?
        .into_inner();
    Ok(Json(routes.into()))
}

pub(super) async fn show(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    Path(service): Path<String>,
) -> Result<Json<ServiceRoutesJson>, ApiError> {
    let routes = RoutingApi { cp }
        .show_routes(grpc_request(&headers, pb::ShowRoutesRequest { service }))
        .await?
        .into_inner();
    Ok(Json(routes.into()))
}
