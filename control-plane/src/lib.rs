//! The Argosy control plane: holds desired state and the fleet's picture,
//! serves agents and people over gRPC and HTTP, and carries the CLI that
//! talks to it. See ARCHITECTURE.md for the map.

pub mod alerts;
pub mod audit;
pub mod audit_log;
pub mod auth;
pub mod backup;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod deploy;
pub mod dto;
pub mod fleet;
pub mod grpc;
pub mod http;
pub mod ingest;
pub mod logs;
pub mod passwords;
pub mod pki;
pub mod policy;
pub mod routing;
pub mod secrets;
pub mod server;
pub mod state;
pub mod store;
pub mod users;
