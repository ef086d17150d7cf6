//! Memory freed by a pass given back to the system.
//!
//! A full pass over 50,000 environments allocates and frees some 6 KB of temporaries per
//! environment (specs, prior states, outcomes, the dashboard's fleet parts). glibc's
//! `malloc` keeps freed pages in its arenas unless they sit at the top of the heap, so the
//! process's resident size stays at the pass's peak. `watch` asks it to return them once a
//! pass is done ([`give_back`]): RSS then follows what is live.
//!
//! One arena (`mallopt(M_ARENA_MAX, 1)`) measured 4.0 KiB per environment at 50,000
//! instead of 4.5, and was taken out: with every thread in one arena, `malloc_trim` and
//! the blocking threads' allocations stalled the loop's thread long enough for slot
//! leases to lapse (the sharded test saw a slot claimed twice and a takeover past
//! `failover`).

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
