//! The guest side of the ABI: the host calls `argosy_alloc(len)` for a
//! buffer, writes the JSON request there, calls `argosy_evaluate(ptr, len)`
//! and reads the JSON answer at the returned `(ptr << 32) | len`.
//!
//! Memory is never freed: every call gets a fresh instance that is thrown
//! away afterwards, so leaking is both safe and the fastest allocator.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Reserves `len` bytes for the host to write the request into.
pub fn alloc(len: i32) -> i32 {
    let len = usize::try_from(len).unwrap_or(0);
    let buffer: &'static mut [u8] = Vec::leak(vec![0u8; len]);
    buffer.as_mut_ptr() as usize as i32
}

/// Packs an answer's location for the host.
pub fn pack(bytes: &'static [u8]) -> i64 {
    let ptr = bytes.as_ptr() as usize as u64;
    let len = bytes.len() as u64;
    ((ptr << 32) | (len & 0xffff_ffff)) as i64
}

/// The request bytes the host wrote at `ptr`.
#[allow(unsafe_code)]
fn request_bytes(ptr: i32, len: i32) -> &'static [u8] {
    let len = usize::try_from(len).unwrap_or(0);
    if len == 0 {
        return &[];
    }
    // SAFETY: `ptr` is what `alloc(len)` returned in this same instance
    // (the ABI), a leaked buffer of at least `len` bytes that lives as long
    // as the instance; nothing else writes to it.
    unsafe { std::slice::from_raw_parts(ptr as usize as *const u8, len) }
}

/// Parses the request, runs the policy, writes the answer. A request the
/// policy cannot read is answered with a JSON object the host rejects as
/// malformed, naming the problem (so the decision fails closed with it).
pub fn evaluate<I, A, F>(ptr: i32, len: i32, policy: F) -> i64
where
    I: DeserializeOwned,
    A: Serialize,
    F: FnOnce(crate::Request<I>) -> A,
{
    let answer = match serde_json::from_slice::<crate::Request<I>>(request_bytes(ptr, len)) {
        Ok(request) => serde_json::to_vec(&policy(request)),
        Err(error) => serde_json::to_vec(&serde_json::json!({
            "error": format!("the policy could not read its input: {error}")
        })),
    }
    .unwrap_or_default();
    pack(Vec::leak(answer))
}
