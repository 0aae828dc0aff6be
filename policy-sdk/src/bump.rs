//! The guest's allocator on wasm32: a bump allocator over linear memory
//! that starts at `__heap_base` and grows memory only when the memory the
//! module starts with is used up.
//!
//! Every decision runs in a fresh instance that is thrown away afterwards,
//! so nothing needs freeing. Rust's default allocator on
//! `wasm32-unknown-unknown` (dlmalloc) ignores the free part of the
//! initial memory and grows memory by a page on its first allocation; a
//! grow makes the host change page protections twice per decision (one
//! `mprotect` to grow, one to shrink the pooled slot back), each a TLB
//! shootdown across the control plane's threads. Starting in the initial
//! memory avoids both.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::Cell;

const PAGE: usize = 65536;

/// Bump allocation over linear memory; `dealloc` is a no-op.
pub struct Bump {
    /// The next free byte, 0 until the first allocation.
    next: Cell<usize>,
}

// SAFETY: wasm32-unknown-unknown policies are single-threaded (no shared
// memory: the host refuses a shared memory at upload), so the cell is
// never reached from two threads.
#[allow(unsafe_code)]
unsafe impl Sync for Bump {}

impl Bump {
    pub const fn new() -> Self {
        Self { next: Cell::new(0) }
    }
}

impl Default for Bump {
    fn default() -> Self {
        Self::new()
    }
}

#[allow(unsafe_code)]
unsafe extern "C" {
    /// Where the linker put the end of the data and stack: the heap's start.
    static __heap_base: u8;
}

/// The first free address (after the data and the stack); only the
/// symbol's address is taken, never its value.
fn heap_base() -> usize {
    core::ptr::addr_of!(__heap_base) as usize
}

/// Makes memory at least `end` bytes long; false when the host refuses.
fn ensure_memory(end: usize) -> bool {
    let have = core::arch::wasm32::memory_size(0) * PAGE;
    if end <= have {
        return true;
    }
    let pages = (end - have).div_ceil(PAGE);
    core::arch::wasm32::memory_grow(0, pages) != usize::MAX
}

#[allow(unsafe_code)]
// SAFETY: every block returned is aligned as asked, lies inside linear
// memory (grown first when needed) and is never handed out twice: `next`
// only moves forward.
unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let next = match self.next.get() {
            0 => heap_base(),
            next => next,
        };
        let align = layout.align();
        let Some(start) = next.checked_add(align - 1).map(|n| n & !(align - 1)) else {
            return core::ptr::null_mut();
        };
        let Some(end) = start.checked_add(layout.size()) else {
            return core::ptr::null_mut();
        };
        if !ensure_memory(end) {
            return core::ptr::null_mut();
        }
        self.next.set(end);
        start as *mut u8
    }

    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {}

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // The last block grows (or shrinks) in place: a Vec being filled.
        let start = ptr as usize;
        if start + layout.size() == self.next.get() {
            let Some(end) = start.checked_add(new_size) else {
                return core::ptr::null_mut();
            };
            if !ensure_memory(end) {
                return core::ptr::null_mut();
            }
            self.next.set(end);
            return ptr;
        }
        // SAFETY: the layout is valid (same alignment, a size the caller
        // vouches for); the old block stays readable (nothing is freed).
        unsafe {
            let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
            let new = self.alloc(new_layout);
            if !new.is_null() {
                core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
            }
            new
        }
    }
}
