//! Traffic routing decisions (issue 8, first part): which hostnames and
//! paths a service owns (`hosts`) and where one region's ingresses send a
//! service's requests, with weights and the reasons for them (`table`).
//! Both are pure; the ingress on the agents, the routing-table push and
//! the DNS answers are built on them.

pub mod hosts;
pub mod table;
