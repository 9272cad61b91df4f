//! Counts the heap allocations each test thread makes, so tests can hold a request path to an
//! allocation budget: each allocation is code and memory the request touches, and in V8 the
//! filter's own cost is mostly that (README, Performance).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    static PAUSED: Cell<bool> = const { Cell::new(false) };
}

fn counted() {
    // `try_with`: a thread being torn down still allocates.
    if !PAUSED.try_with(Cell::get).unwrap_or(true) {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        counted();
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        counted();
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        counted();
        System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// Allocations (and reallocations) this thread made while `f` ran.
pub fn allocations_in(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

/// Leaves this thread's allocations uncounted until dropped: for the test double's set-up of a
/// request, which is not the filter's work.
pub struct Paused(bool);

pub fn paused() -> Paused {
    Paused(PAUSED.with(|p| p.replace(true)))
}

impl Drop for Paused {
    fn drop(&mut self) {
        PAUSED.with(|p| p.set(self.0));
    }
}
