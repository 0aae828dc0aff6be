//! Services, revisions and deployments: the validated model, spec parsing,
//! placement and rollout decisions (pure), and their adapters.

pub mod controller;
pub mod model;
pub mod rollout;
pub mod rotation;
pub mod scheduler;
pub mod secret_access;
pub mod secret_catalog;
pub mod secret_refs;
pub mod spec;
pub mod units;
pub mod wire;
