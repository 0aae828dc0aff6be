//! Services, revisions and deployments: the validated model, spec parsing,
//! placement and rollout decisions (pure), and their adapters.

pub mod model;
pub mod rollout;
pub mod scheduler;
