//! `portico lb list`: the node agent's service map, read from the maps it pinned on this
//! node's bpffs (like `cilium bpf lb list`), without loading or attaching anything.
//!
//! ```text
//!   FRONTEND              BACKENDS                WEIGHT  FLAGS
//!   10.96.0.10:80/TCP     10.0.0.1:8080           1       0x0
//!                         10.0.0.2:8080           1
//!   172.18.0.200:80/TCP   10.0.0.1:8080           1       0x3 gateway,external
//! ```

use std::io::Write;
use std::path::Path;

/// Where `portico-agent` pins its maps by default.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/portico";

/// Why the map could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum LbError {
    #[error(
        "reading the agent's maps under {pin_dir} (is portico-agent running on this node, and are you root?): {source}"
    )]
    Maps {
        pin_dir: String,
        #[source]
        source: portico_agent::DatapathError,
    },
    #[error("writing the list: {0}")]
    Write(#[from] std::io::Error),
}

/// Prints the services pinned under `pin_dir`.
pub fn list(pin_dir: &Path, out: &mut impl Write) -> Result<(), LbError> {
    let entries = portico_agent::list_pinned(pin_dir).map_err(|source| LbError::Maps {
        pin_dir: pin_dir.display().to_string(),
        source,
    })?;
    portico_agent::run::print_entries(&entries, out)?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_pin_directory_says_where_it_looked() {
        let dir = tempfile::tempdir().unwrap();
        let err = list(&dir.path().join("none"), &mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("none"), "{err}");
        assert!(err.to_string().contains("portico-agent"), "{err}");
    }
}
