//! The BPF filesystem, where maps and links are pinned so that they outlive the agent.

use std::fs;
use std::io;
use std::path::Path;

use nix::mount::{MsFlags, mount};
use nix::sys::statfs::{BPF_FS_MAGIC, statfs};

/// Where bpffs is mounted on a node, as systemd and Cilium mount it.
pub const DEFAULT_ROOT: &str = "/sys/fs/bpf";

/// Whether `path` lies on a BPF filesystem.
pub fn is_bpffs(path: &Path) -> io::Result<bool> {
    let fs = statfs(path).map_err(io::Error::from)?;
    Ok(fs.filesystem_type() == BPF_FS_MAGIC)
}

/// Mounts a bpffs at `root` unless one is there already (a node where nothing mounted
/// it, or a container given an empty `/sys/fs/bpf`). Returns whether it mounted one.
pub fn ensure_mounted(root: &Path) -> io::Result<bool> {
    fs::create_dir_all(root)?;
    if is_bpffs(root)? {
        return Ok(false);
    }
    mount(
        Some("bpf"),
        root,
        Some("bpf"),
        MsFlags::empty(),
        None::<&str>,
    )
    .map_err(io::Error::from)?;
    Ok(true)
}
