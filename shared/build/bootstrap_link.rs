//! Build script of the Lambda bootstraps (the three functions) and of the hello baseline: link
//! them as position-dependent executables (`-no-pie`).
//!
//! A PIE bootstrap carries ~52,000 relative relocations (the SDKs' vtables and tables in 1.3 MB
//! of `.data.rel.ro`) that the dynamic loader applies at every cold start, copying each page it
//! writes: measured, that is most of the gap between a function's init and a no-SDK hello's
//! (benches/README.md, "Position-dependent bootstraps"). Linked `-no-pie`, the linker resolves
//! them once, at build time. The code stays position-independent; libraries, heap, stack and
//! mmap are still randomized; only the executable's own load address is fixed, as in Go's
//! default Linux binaries. `PATCHPILOT_PIE=1` at build time keeps the PIE link.
fn main() {
    println!("cargo:rerun-if-env-changed=PATCHPILOT_PIE");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux");
    if linux && std::env::var_os("PATCHPILOT_PIE").is_none_or(|v| v.is_empty() || v == "0") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
