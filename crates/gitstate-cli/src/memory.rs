//! Memory freed by a pass given back to the system.
//!
//! A full pass over 50,000 environments allocates and frees some 6 KB of temporaries per
//! environment (specs, prior states, outcomes, the dashboard's fleet parts). glibc's
//! `malloc` keeps freed pages in its arenas unless they sit at the top of the heap, so the
//! process's resident size stays at the pass's peak. `watch` asks it to return them once a
//! pass is done ([`give_back`]): RSS then follows what is live.
//!
//! `watch` also keeps to one arena ([`one_arena`]): its loop runs on one thread, and what
//! the blocking threads (Git listings, state files) allocated in arenas of their own
//! stayed resident beside it — 5.04 KiB per environment at 50,000 with them, 4.49 with
//! one (`BENCH_ONLY=scale50k bash scripts/bench`, `MALLOC_ARENA_MAX=1` against none).

/// Returns the pages `malloc` holds free to the system (glibc's `malloc_trim(0)`, which
/// releases free pages anywhere in every arena). A no-op on other C libraries.
pub fn give_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: `malloc_trim` takes no pointers and only walks glibc's own arenas under their
    // locks; it is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Makes `malloc` keep to one arena for the rest of the process (glibc's
/// `mallopt(M_ARENA_MAX, 1)`); call it before threads start. A no-op on other C libraries.
pub fn one_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: `mallopt` takes two integers and only sets a parameter of glibc's allocator.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
