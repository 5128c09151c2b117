//! The `alphapulse` binary: everything happens in [`alphapulse::cli`].
use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() {
    std::process::exit(alphapulse::cli::main())
}
