//! Compiles the data-plane config model (`proto/`) into Rust with prost, plus serde
//! impls in the protobuf JSON mapping (pbjson) so that configs read well as YAML in
//! golden files and debug output. protoc comes from `protoc-bin-vendored`, so a fresh
//! machine needs no system package to build.
//!
//! `stream.proto` (the config stream service) shares the package of `config.proto`, so
//! both are compiled in one protoc run. The tonic client and server of the service are
//! generated only with the `grpc` feature: the translator depends on this crate for the
//! messages and must not pull in tonic.

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/portico/config/v1/config.proto",
        "proto/portico/config/v1/stream.proto",
    ];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    let descriptors = out.join("portico_descriptors.bin");
    let grpc = env::var_os("CARGO_FEATURE_GRPC").is_some();

    let mut config = prost_build::Config::new();
    config
        .protoc_executable(protoc)
        .file_descriptor_set_path(&descriptors)
        .compile_well_known_types()
        .extern_path(".google.protobuf", "::pbjson_types");
    tonic_prost_build::configure()
        .build_client(grpc)
        .build_server(grpc)
        .build_transport(grpc)
        .compile_with_config(config, &protos, &["proto"])?;

    let descriptor_set = std::fs::read(&descriptors)?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptor_set)?
        .build(&[".portico"])?;
    Ok(())
}
