//! Compiles the eBPF programs in `bpf/*.c` with clang into `$OUT_DIR/<name>.o`, which
//! `src/programs.rs` embeds with `aya::include_bytes_aligned!`.
//!
//! The programs are C (not Rust) because this toolchain has no rust-src to build
//! `bpfel-unknown-none` with. They use only uapi headers (linux-libc-dev) and libbpf-dev's
//! helper definitions; clang is Debian's `clang-19` unless `$CLANG` names another.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const INSTALL_HINT: &str = "install them with: apt-get install -y clang-19 llvm-19 libbpf-dev \
     linux-libc-dev (or point $CLANG at a clang that targets bpf)";

fn main() {
    println!("cargo:rerun-if-changed=bpf");
    println!("cargo:rerun-if-env-changed=CLANG");

    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let clang = find_clang();
    let include = multiarch_include();
    if !Path::new("/usr/include/bpf/bpf_helpers.h").exists() {
        panic!("portico-agent: /usr/include/bpf/bpf_helpers.h is missing; {INSTALL_HINT}");
    }

    let mut sources: Vec<PathBuf> = fs::read_dir("bpf")
        .expect("crates/agent/bpf exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "c"))
        .collect();
    sources.sort();
    for src in sources {
        let stem = src.file_stem().expect("a .c file has a stem");
        let obj = out_dir.join(stem).with_extension("o");
        let output = Command::new(&clang)
            .args(["-target", "bpf", "-O2", "-g", "-Wall", "-Werror"])
            .arg(format!("-I{}", include.display()))
            .arg("-c")
            .arg(&src)
            .arg("-o")
            .arg(&obj)
            .output()
            .unwrap_or_else(|e| panic!("portico-agent: running {clang}: {e}; {INSTALL_HINT}"));
        if !output.status.success() {
            panic!(
                "portico-agent: {clang} failed on {}:\n{}",
                src.display(),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

/// `$CLANG`, else the first of clang-19 and clang found on `$PATH`.
fn find_clang() -> String {
    if let Some(c) = env::var_os("CLANG") {
        return c.to_string_lossy().into_owned();
    }
    for candidate in ["clang-19", "clang"] {
        let found = Command::new(candidate)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if found {
            return candidate.to_owned();
        }
    }
    panic!("portico-agent: clang is needed to build the eBPF programs in bpf/; {INSTALL_HINT}");
}

/// Where Debian keeps `asm/types.h` for the host, which `linux/bpf.h` includes.
fn multiarch_include() -> PathBuf {
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let triple = match arch.as_str() {
        "aarch64" => "aarch64-linux-gnu",
        _ => "x86_64-linux-gnu",
    };
    let dir = Path::new("/usr/include").join(triple);
    if !dir.join("asm/types.h").exists() {
        panic!(
            "portico-agent: {}/asm/types.h is missing; {INSTALL_HINT}",
            dir.display()
        );
    }
    dir
}
