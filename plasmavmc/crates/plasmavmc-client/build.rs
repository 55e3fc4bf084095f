//! Compiles PlasmaVMC's gRPC definitions with protox (a pure-Rust protobuf compiler), so
//! neither a developer machine nor the Nix build needs `protoc`.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/plasmavmc.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(protos, ["proto"])?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
