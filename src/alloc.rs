//! A global-allocator wrapper that counts allocations per thread, so the engine can show
//! (and the ingest benchmark can prove) how many heap allocations each message costs on
//! a shard core.
//!
//! The count lives in a thread-local `Cell` with a constant initialiser: no lazy setup,
//! no destructor, no atomic, nothing shared between cores. Reading it is only meaningful
//! on the thread being measured; shard cores publish theirs into their stats.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

/// Wraps an allocator (mimalloc in the binary) and counts `alloc`/`realloc` calls.
pub struct Counting<A>(pub A);

// SAFETY: every call is forwarded unchanged to the wrapped allocator; the counter is a
// thread-local `Cell` that never allocates.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Counting<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump();
        self.0.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        bump();
        self.0.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.0.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump();
        self.0.realloc(ptr, layout, new_size)
    }
}

#[inline]
fn bump() {
    // `try_with` fails only while the thread is being torn down; not counting then is fine.
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

/// Allocations made by the calling thread so far (zero when the counting allocator is
/// not installed, as in the library's own tests).
pub fn thread_allocations() -> u64 {
    ALLOCATIONS.try_with(Cell::get).unwrap_or(0)
}
