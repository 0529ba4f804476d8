//! What the fuzz targets share: loading manifests the way `portico standalone` and the
//! file provider do, and the properties every translation must have.
//!
//! ```text
//!  text ──FileProvider (a temp folder)──> Inputs ──translate──> Output { config, statuses }
//!                                                                  │ checked: statuses for
//!                                                                  │ our classes and Gateways,
//!                                                                  │ deterministic, protobuf
//!                                                                  ▼ round trip
//!                                     portico_proxy::fuzzing::compile (must accept it)
//! ```

use std::fs;
use std::path::Path;

use http::HeaderMap;
use portico_api::config::v1 as pb;
use portico_api::names;
use portico_operator::{FileProvider, ProviderEvent};
use portico_translate::{Inputs, ObjectRef, Options, Output, translate};
use prost::Message;

/// Loads `files` (name, content) from a fresh folder through the file provider, as
/// `portico standalone DIR` does.
pub fn load(files: &[(String, String)]) -> ProviderEvent {
    let dir = tempfile::tempdir().expect("a temp dir for the fuzz input");
    write_files(dir.path(), files);
    let mut provider = FileProvider::new(dir.path());
    provider
        .reload()
        .expect("the first reload always publishes an event")
}

/// Writes `files` under `dir`; names are made safe (no `..`, no absolute paths) and
/// sub-folders are created.
pub fn write_files(dir: &Path, files: &[(String, String)]) {
    for (name, content) in files {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("create a sub-folder of the temp dir");
        }
        fs::write(&path, content).expect("write a file of the temp dir");
    }
}

/// Translates `inputs` with the standalone defaults and checks what every translation
/// must hold, whatever the objects:
/// - every GatewayClass of ours and every Gateway of one of them has a status;
/// - equal inputs give an equal config (the version is a content hash);
/// - the config survives a protobuf round trip (the config stream);
/// - the proxy accepts it: a config the translator emits is never NACKed.
pub fn translate_checked(inputs: &Inputs) -> Output {
    let options = Options::default();
    let output = translate(inputs, &options);

    let ours: Vec<&str> = inputs
        .gateway_classes
        .iter()
        .filter(|c| c.spec.controller_name == names::CONTROLLER_NAME)
        .filter_map(|c| c.metadata.name.as_deref())
        .collect();
    for class in &ours {
        assert!(
            output.statuses.gateway_classes.contains_key(*class),
            "GatewayClass {class} of ours has no status"
        );
    }
    for gw in &inputs.gateways {
        if !ours.contains(&gw.spec.gateway_class_name.as_str()) {
            continue;
        }
        let key = ObjectRef::new(
            gw.metadata.namespace.clone().unwrap_or_default(),
            gw.metadata.name.clone().unwrap_or_default(),
        );
        assert!(
            output.statuses.gateways.contains_key(&key),
            "Gateway {key:?} of our class has no status"
        );
    }

    let again = translate(inputs, &options);
    assert_eq!(
        again.config, output.config,
        "translation is not deterministic"
    );

    let bytes = output.config.encode_to_vec();
    let decoded = pb::Config::decode(bytes.as_slice()).expect("decode an encoded config");
    assert_eq!(decoded, output.config, "config protobuf round trip");

    if let Err(e) = portico_proxy::fuzzing::compile(&output.config) {
        panic!("the proxy rejects a config the translator emitted: {e}");
    }
    output
}

/// Panics when a header value would put a line break (or NUL) on the wire: a header
/// injection. `HeaderValue` refuses them when it is built; this catches any way around.
pub fn assert_no_line_breaks(headers: &HeaderMap, side: &str) {
    for (name, value) in headers {
        assert!(
            !value
                .as_bytes()
                .iter()
                .any(|b| matches!(b, b'\r' | b'\n' | b'\0')),
            "{side} header {name} carries CR, LF or NUL: {value:?}"
        );
    }
}
