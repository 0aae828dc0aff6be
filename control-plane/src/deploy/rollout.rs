//! Deployment state machines (pure).
