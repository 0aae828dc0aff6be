//! The wire contract between the Argosy control plane, its agents and its
//! API clients: the generated `argosy.v1` messages and services, the join
//! string an agent enrolls with, and the client-side TLS (CA pinning and
//! mutual TLS) that both the agent and the CLI dial with.

pub mod exposition;
pub mod join;
mod redact;
pub mod tls;

/// Generated `argosy.v1` messages, clients and servers.
#[allow(unreachable_pub, clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("argosy.v1");
}

/// The encoded `FileDescriptorSet` of every `argosy.v1` file, for gRPC
/// server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/argosy_descriptor.bin"));
