//! The `alphapulse` binary: everything happens in [`alphapulse::cli`].
use alphapulse::alloc::Counting;
use mimalloc::MiMalloc;

/// mimalloc, with per-thread allocation counts for the shard statistics.
#[global_allocator]
static GLOBAL: Counting<MiMalloc> = Counting(MiMalloc);

fn main() {
    std::process::exit(alphapulse::cli::main())
}
