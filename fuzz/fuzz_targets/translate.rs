//! The translator on arbitrary manifests: the input is the text of one YAML file
//! (seeds: the manifests of e2e/cases and examples/), loaded by the file provider and
//! translated. Never panics; always yields statuses for our GatewayClasses and their
//! Gateways; the config it emits is deterministic and the proxy accepts it
//! (`portico_fuzz::translate_checked`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let event = portico_fuzz::load(&[("manifests.yaml".to_owned(), text.to_owned())]);
    let output = portico_fuzz::translate_checked(&event.inputs);
    write_config_seed(&output.config);
});

/// With `PORTICO_FUZZ_CONFIG_SEEDS=DIR`, writes the protobuf of every config translated
/// to DIR: `make fuzz-seeds` runs this target once over its corpus to give
/// `proxy_config` real configs to start from.
fn write_config_seed(config: &portico_api::config::v1::Config) {
    use prost::Message;
    static DIR: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
    let dir = DIR.get_or_init(|| std::env::var_os("PORTICO_FUZZ_CONFIG_SEEDS").map(Into::into));
    if let Some(dir) = dir {
        let name = if config.version.is_empty() {
            "empty"
        } else {
            &config.version
        };
        let name: String = name.chars().filter(char::is_ascii_alphanumeric).collect();
        std::fs::write(dir.join(name), config.encode_to_vec()).expect("write a config seed");
    }
}
