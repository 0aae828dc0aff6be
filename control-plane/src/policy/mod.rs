//! Policies: sandboxed WebAssembly modules, uploaded through the API, that
//! decide admission (`deployment.admit`), placement (`placement.filter`) and
//! canary analysis (`rollout.analyze`). The ABI is JSON over linear memory
//! (`docs/policies.md`).
//!
//! Pure parts (no wasmtime, no I/O, unit-tested): [`hook`] (hooks, names,
//! configuration, limits), [`input`] (what each hook is given),
//! [`decision`] (what a module may answer, validated strictly, and how the
//! answers of several policies combine — every failure is a deny naming the
//! policy) and [`defaults`] (filling the fields a policy supplies into the
//! spec document). Adapters: [`runtime`] (wasmtime: the sandbox, the
//! compiled-module cache, upload checks) and [`engine`] (which policies are
//! enabled, read from the store, evaluated off the async runtime).

pub mod decision;
pub mod defaults;
pub mod engine;
pub mod hook;
pub mod input;
pub mod runtime;

pub use decision::{
    AdmissionDecision, AnalysisAction, AnalysisVerdict, HostVerdict, PolicyFailure,
};
pub use engine::Policies;
pub use hook::{Hook, Limits, PolicyName};
