//! The `gitstate` binary.
//!
//! It allocates with the C library's `malloc`. jemalloc was used while `watch` ran on
//! several worker threads, whose per-thread glibc arenas fragmented; on the one-thread
//! runtime `watch` uses now, the two measure the same at 10,000 environments
//! (`BENCH_ONLY=scale`: 104.7 MB and 1.52 CPU-s a minute with glibc, 106.6 MB and 1.56 with
//! jemalloc), and jemalloc's start cost a short command 0.25 ms and 110 page faults.

fn main() {
    std::process::exit(gitstate_cli::run());
}
