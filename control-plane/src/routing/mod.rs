//! Traffic routing: which hostnames and paths a service owns (`hosts`),
//! how its requests are split between revisions as its rollout moves
//! (`split`), where one region's ingresses send them, with weights and the
//! reasons for them (`table`), what the ingresses measured (`traffic`),
//! whether a certificate can serve a route (`certificate`), which ingress
//! addresses a hostname resolves to (`dns`, served by `dns_server`), the
//! measured round trips between regions (`latency`), and the
//! conversions between stored facts
//! and the wire (`wire`) — all pure — and the controller that computes
//! every region's table and pushes it to the agents (`controller`).

pub mod certificate;
pub mod controller;
pub mod dns;
pub mod dns_server;
pub mod hosts;
pub mod latency;
pub mod split;
pub mod table;
pub mod traffic;
pub mod wire;

pub use controller::Router;
