//! Compiles the gRPC echo service (`proto/grpcecho.proto`) with tonic-prost-build:
//! messages, the server trait and the client. protoc comes from `protoc-bin-vendored`,
//! as in crates/api, so a fresh machine needs no system package to build.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/grpcecho.proto";
    println!("cargo:rerun-if-changed={proto}");
    // The path is handed over rather than set in PROTOC: a build script must not
    // depend on (or change) the environment it runs in.
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_with_config(config, &[proto], &["proto"])?;
    Ok(())
}
