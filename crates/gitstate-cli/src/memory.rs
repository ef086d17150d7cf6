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

/// Large blocks (over [`MMAP_THRESHOLD`]: a `/status` document, a page, a chunk's
/// vectors) straight from the system and back to it when freed. glibc otherwise raises
/// its threshold after the first such block is freed (up to 32 MiB), and the next ones
/// come from the heap, where what they leave behind fragments it: at 50,000 environments
/// 4.14 KiB per environment steady with the sliding threshold, 3.70 with this one
/// (`BENCH_ONLY=scale50k`). Call once, before the loop starts.
pub fn large_blocks_from_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: `mallopt` takes integers only and changes a setting glibc reads under its
    // own locks; `M_MMAP_THRESHOLD` is one of its documented parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int);
    }
}

/// Blocks at least this large are mapped on their own.
pub const MMAP_THRESHOLD: usize = 256 * 1024;

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
