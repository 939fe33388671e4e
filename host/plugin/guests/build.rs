//! Builds the plugins workspace (`plugins/`) for WebAssembly and exports the path of each
//! component as `TERN_GUEST_<CRATE>` (e.g. `TERN_GUEST_CONTENT_ROUTER`).
//!
//! The inner cargo gets its own target directory (beside the outer one), so it never waits
//! on the outer cargo's lock, and runs in `plugins/` so that workspace's
//! `.cargo/config.toml` (target, component linker) applies. A missing wasm target is an
//! error that says how to install it: plugin tests are never skipped silently.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-unknown-unknown";
/// One guest is also built for WASI preview 2, as a plugin author might by mistake: its
/// component imports WASI interfaces, which the node must refuse with a clear error.
const WASIP2_TARGET: &str = "wasm32-wasip2";
const WASIP2_GUEST: &str = "misbehaving";
const GUESTS: &[&str] = &[
    "residency-policy",
    "json-dedup-key",
    "content-router",
    "lww-resolver",
    "misbehaving",
];

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let repo = manifest_dir
        .join("../../..")
        .canonicalize()
        .expect("the repository root exists");
    let plugins = repo.join("plugins");

    for path in [
        "wit",
        "sdk/src",
        "sdk/Cargo.toml",
        "sdk/macros/src",
        "sdk/macros/Cargo.toml",
        // Compiled into the SDK by path.
        "host/plugin/src/batch.rs",
        "host/plugin/src/headers.rs",
        "host/proto/src/subject_match.rs",
        "plugins/Cargo.toml",
        "plugins/Cargo.lock",
        "plugins/.cargo/config.toml",
    ] {
        println!("cargo:rerun-if-changed={}", repo.join(path).display());
    }
    for guest in GUESTS {
        println!(
            "cargo:rerun-if-changed={}",
            plugins.join(guest).join("src").display()
        );
        println!(
            "cargo:rerun-if-changed={}",
            plugins.join(guest).join("Cargo.toml").display()
        );
    }

    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    check_target_installed(&rustc, TARGET);
    check_target_installed(&rustc, WASIP2_TARGET);

    // OUT_DIR is <target-dir>[/<triple>]/<profile>/build/<pkg>-<hash>/out: share one wasm
    // build between debug, test and bench builds of the outer workspace.
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("set by cargo"));
    let wasm_target_dir = out_dir
        .ancestors()
        .nth(4)
        .unwrap_or(&out_dir)
        .join("tern-plugins-wasm");

    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let guests: Vec<&str> = GUESTS.to_vec();
    cargo_build(&cargo, &plugins, &wasm_target_dir, TARGET, &guests);
    cargo_build(
        &cargo,
        &plugins,
        &wasm_target_dir,
        WASIP2_TARGET,
        &[WASIP2_GUEST],
    );

    for guest in GUESTS {
        export_path(&wasm_target_dir, TARGET, guest, "");
    }
    export_path(&wasm_target_dir, WASIP2_TARGET, WASIP2_GUEST, "_WASIP2");
}

fn cargo_build(cargo: &str, plugins: &Path, target_dir: &Path, target: &str, guests: &[&str]) {
    let mut cmd = Command::new(cargo);
    cmd.current_dir(plugins)
        .args(["build", "--release", "--target", target])
        .env("CARGO_TARGET_DIR", target_dir)
        // Settings meant for the outer build (clippy's driver, host rustflags) must not
        // leak into the guest build.
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_BUILD_RUSTFLAGS");
    for guest in guests {
        cmd.args(["-p", guest]);
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run `{cargo}` to build the plugins: {e}"));
    if !status.success() {
        panic!(
            "building the plugins failed ({status}): run `cargo build --release` in {} to see why",
            plugins.display()
        );
    }
}

fn export_path(target_dir: &Path, target: &str, guest: &str, suffix: &str) {
    let wasm = target_dir
        .join(target)
        .join("release")
        .join(format!("{}.wasm", guest.replace('-', "_")));
    assert!(
        wasm.is_file(),
        "the plugins build did not produce {}",
        wasm.display()
    );
    println!(
        "cargo:rustc-env=TERN_GUEST_{}{suffix}={}",
        guest.replace('-', "_").to_uppercase(),
        wasm.display()
    );
}

fn check_target_installed(rustc: &str, target: &str) {
    let out = Command::new(rustc)
        .args(["--print", "target-libdir", "--target", target])
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{rustc}`: {e}"));
    let libdir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let has_core = out.status.success()
        && Path::new(&libdir).read_dir().is_ok_and(|mut d| {
            d.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("libcore-")))
        });
    if !has_core {
        panic!(
            "\n\nThe Rust target `{target}` is not installed, and the plugin tests need it to \
             build the plugins in plugins/.\nInstall both targets they use with:\n\n    \
             rustup target add {TARGET} {WASIP2_TARGET}\n\n"
        );
    }
}
