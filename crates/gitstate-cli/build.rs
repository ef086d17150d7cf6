//! Links the `gitstate` executable without PIE on Linux (glibc), as Go links its binaries
//! by default there.
//!
//! A position-independent executable of this size carries ~54,000 relative relocations
//! that the dynamic loader applies at every start, copying ~230 of its pages: that was
//! 0.5 ms of each 3 ms `gitstate expected` (`scripts/bench`, `expected_mix`). Without PIE
//! the executable's own image is not randomised; its libraries, heap, stack and thread
//! stacks still are. `GITSTATE_PIE=1` at build time keeps PIE.

fn main() {
    println!("cargo:rerun-if-env-changed=GITSTATE_PIE");
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let keep_pie = std::env::var_os("GITSTATE_PIE").is_some_and(|v| v != "0");
    if var("CARGO_CFG_TARGET_OS") == "linux" && var("CARGO_CFG_TARGET_ENV") == "gnu" && !keep_pie {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
