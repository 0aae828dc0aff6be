//! Compiles `argosy/v1/*.proto` with protox (a pure-Rust protobuf compiler,
//! so no system `protoc` is needed) and generates prost messages and tonic
//! clients and servers from the descriptors. The encoded descriptor set is
//! kept for gRPC server reflection.

use prost::Message;
use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "argosy/v1/types.proto",
    "argosy/v1/agent.proto",
    "argosy/v1/fleet.proto",
    "argosy/v1/tokens.proto",
    "argosy/v1/deploy.proto",
    "argosy/v1/audit.proto",
    "argosy/v1/access.proto",
    "argosy/v1/secrets.proto",
    "argosy/v1/alerts.proto",
    "argosy/v1/backups.proto",
    "argosy/v1/policies.proto",
    "argosy/v1/routing.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(PROTOS, ["."])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("argosy_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Implemented by hand in `redact`: a secret's value never reaches a log.
        .skip_debug([
            ".argosy.v1.SecretValue",
            ".argosy.v1.SetSecretRequest",
            ".argosy.v1.GetSecretResponse",
            ".argosy.v1.RotateMasterKeyRequest",
        ])
        .compile_fds(descriptors)?;
    Ok(())
}
