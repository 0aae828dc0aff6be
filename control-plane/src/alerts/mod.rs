//! Alerting: rules over host metrics and fleet events, the alert lifecycle
//! (pending → firing → resolved, de-duplication, repeats, flapping,
//! silences, acknowledgements) and notifications to webhooks, Slack-style
//! chats and Prometheus Alertmanager.
//!
//! Decisions are pure and live apart from the I/O: `rules` (the rule
//! model), `facts` (fleet data → observations), `evaluate` (the lifecycle),
//! `silences`, `routing` and `notify` (payloads and the retry policy).
//! Adapters: `sender` posts over HTTP, `engine` is the loop that gathers
//! facts, evaluates, stores the outcome and delivers from the outbox, and
//! `telemetry` feeds `/metrics`.

pub mod engine;
pub mod evaluate;
pub mod facts;
pub mod notify;
pub mod routing;
pub mod rules;
pub mod sender;
pub mod silences;
pub mod telemetry;

pub use telemetry::AlertTelemetry;
