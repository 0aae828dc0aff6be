//! Placement of allocations on hosts (pure).
