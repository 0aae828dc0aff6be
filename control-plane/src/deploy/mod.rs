//! Services, revisions and deployments: the validated model, spec parsing,
//! placement and rollout decisions (pure), and their adapters.

pub mod controller;
pub mod model;
pub mod rollout;
pub mod scheduler;
pub mod spec;
pub mod units;
pub mod wire;
