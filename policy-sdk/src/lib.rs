//! The Argosy policy SDK: write a policy as a Rust function from a hook's
//! input to its answer, and [`policy!`] exports it with the ABI the
//! control plane calls (JSON over linear memory, `docs/policies.md`).
//!
//! ```no_run
//! use argosy_policy_sdk::{policy, Request, input::AdmitInput, answer::Admit};
//!
//! fn admit(request: Request<AdmitInput>) -> Admit {
//!     if request.input.spec.image_tag.as_deref() == Some("latest") {
//!         return Admit::deny("pin the image to a tag or digest, not :latest");
//!     }
//!     Admit::allow()
//! }
//!
//! policy!(AdmitInput => admit);
//! ```
//!
//! Build with `cargo build --target wasm32-unknown-unknown --release` (a
//! `cdylib` crate) and upload the `.wasm` with `argosy policy add`.
//! Policies have no clock, filesystem, network or environment: what they
//! know is in the request. Each call runs in a fresh instance, so nothing
//! carries over between calls.

pub mod abi;
pub mod answer;
#[cfg(target_arch = "wasm32")]
pub mod bump;
pub mod input;

pub use serde_json::{self, Value, json};

/// Every policy built with the SDK allocates with [`bump::Bump`] (a
/// fresh instance per decision needs no `free`, and it starts in the
/// module's initial memory instead of growing it).
#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: bump::Bump = bump::Bump::new();

/// What a policy receives: the hook, its own name and configuration
/// (`argosy policy add --config`), and the hook's input.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Request<I> {
    pub abi: u32,
    pub hook: String,
    pub policy: String,
    #[serde(default)]
    pub config: Value,
    pub input: I,
}

impl<I> Request<I> {
    /// A configuration value, or `default` when it is absent or of
    /// another type.
    pub fn config<T: serde::de::DeserializeOwned>(&self, key: &str, default: T) -> T {
        self.config
            .get(key)
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or(default)
    }
}

/// Exports a policy: `policy!(InputType => function)` where `function`
/// takes a [`Request<InputType>`] and returns an answer of the hook
/// ([`answer::Admit`], [`answer::Placement`] or [`answer::Analysis`]).
#[macro_export]
macro_rules! policy {
    ($input:ty => $function:path) => {
        /// ABI: the host asks for `len` bytes to write the request into.
        #[unsafe(no_mangle)]
        pub extern "C" fn argosy_alloc(len: i32) -> i32 {
            $crate::abi::alloc(len)
        }

        /// ABI: evaluates the request at `ptr..ptr+len`; returns the
        /// answer's pointer (high 32 bits) and length (low 32 bits).
        #[unsafe(no_mangle)]
        pub extern "C" fn argosy_evaluate(ptr: i32, len: i32) -> i64 {
            $crate::abi::evaluate::<$input, _, _>(ptr, len, $function)
        }
    };
}
