//! Links the agent's functions in the order its common runs first execute
//! them (`symbol-order.txt`, written by `scripts/agent-symbol-order`), so
//! that the code a run touches sits together: the kernel maps the cached
//! neighbours of every code page a process faults in, and scattered, those
//! made almost the whole binary resident (docs/benchmarks.md).
//!
//! The option is lld's (`--symbol-ordering-file`; mold takes it too). rustc
//! links with its bundled lld on x86_64 Linux since 1.90, so only that
//! target gets it; `DROVER_NO_SYMBOL_ORDER=1` leaves it out for a build with
//! another linker. A name the binary no longer has is skipped silently.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=symbol-order.txt");
    println!("cargo:rerun-if-env-changed=DROVER_NO_SYMBOL_ORDER");
    let lld_by_default = std::env::var("TARGET").is_ok_and(|t| t == "x86_64-unknown-linux-gnu");
    if !lld_by_default || std::env::var_os("DROVER_NO_SYMBOL_ORDER").is_some() {
        return;
    }
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it");
    let order = Path::new(&manifest_dir).join("symbol-order.txt");
    println!(
        "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
        order.display()
    );
    println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
}
