//! Small blocks kept by size class for reuse, in front of a general
//! allocator.
//!
//! A rule set allocates and frees many small blocks per call (strings of
//! rows and alerts, state lists), mostly of a few sizes. A freed block of up
//! to [`MAX_SMALL`] bytes goes onto its class's free list, and the next
//! allocation of that class takes it back in a few instructions instead of a
//! search of the general allocator's bins. Each list holds at most
//! [`MAX_CACHED`] bytes; past that, blocks go back to the general allocator,
//! so what the pool keeps stays bounded whatever a call did.
//!
//! Not thread-safe: for single-threaded WebAssembly (or for one thread, as in
//! the tests).

use std::alloc::{GlobalAlloc, Layout};
use std::cell::UnsafeCell;
use std::ptr;

/// Size classes are multiples of this, which is also the alignment every
/// pooled block has.
const GRAIN: usize = 16;
/// The largest pooled block.
pub const MAX_SMALL: usize = 256;
const CLASSES: usize = MAX_SMALL / GRAIN;
/// The most bytes one class keeps for reuse.
pub const MAX_CACHED: usize = 256 * 1024;

struct Lists {
    /// The first free block of each class; each free block holds the next.
    heads: [*mut u8; CLASSES],
    /// Bytes held by each class's list.
    cached: [usize; CLASSES],
}

/// Pooled small blocks in front of `A`.
pub struct Pool<A> {
    inner: A,
    lists: UnsafeCell<Lists>,
}

// SAFETY: WebAssembly without the atomics feature has one thread, so the
// lists are never reached from two at once. Elsewhere the pool is not
// `Sync` and cannot be a global allocator (the tests use it from one thread).
#[cfg(all(not(target_feature = "atomics"), target_family = "wasm"))]
unsafe impl<A: Sync> Sync for Pool<A> {}

/// The class of a layout, if it is pooled.
fn class_of(layout: Layout) -> Option<usize> {
    (layout.size() <= MAX_SMALL && layout.align() <= GRAIN)
        .then(|| layout.size().max(1).div_ceil(GRAIN) - 1)
}

/// The layout every block of class `c` is allocated with.
fn class_layout(c: usize) -> Layout {
    // SAFETY: a non-zero multiple of a power-of-two alignment.
    unsafe { Layout::from_size_align_unchecked((c + 1) * GRAIN, GRAIN) }
}

impl<A> Pool<A> {
    /// A pool in front of `inner`.
    pub const fn new(inner: A) -> Self {
        Self {
            inner,
            lists: UnsafeCell::new(Lists {
                heads: [ptr::null_mut(); CLASSES],
                cached: [0; CLASSES],
            }),
        }
    }

    /// Bytes kept for reuse, all classes together.
    pub fn cached_bytes(&self) -> usize {
        // SAFETY: single-threaded (see `Sync`).
        unsafe { (*self.lists.get()).cached.iter().sum() }
    }
}

// SAFETY: every block handed out comes from `inner` with a layout at least
// as large and as aligned as the one asked for (a class's layout), and is
// returned to `inner` with that same layout or kept on its class's list.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Pool<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(c) = class_of(layout) else {
            // SAFETY: the caller's guarantees for `alloc`, passed on.
            return unsafe { self.inner.alloc(layout) };
        };
        // SAFETY: single-threaded; a listed block is free, of class `c`, and
        // its first word holds the next free block.
        unsafe {
            let lists = &mut *self.lists.get();
            let head = lists.heads[c];
            if head.is_null() {
                return self.inner.alloc(class_layout(c));
            }
            lists.heads[c] = head.cast::<*mut u8>().read();
            lists.cached[c] -= (c + 1) * GRAIN;
            head
        }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        let Some(c) = class_of(layout) else {
            // SAFETY: an unpooled block came from `inner` with this layout.
            return unsafe { self.inner.dealloc(block, layout) };
        };
        // SAFETY: `block` was allocated for class `c` (by `alloc` or
        // `realloc`), is at least a word long and aligned to `GRAIN`.
        unsafe {
            let lists = &mut *self.lists.get();
            if lists.cached[c] + (c + 1) * GRAIN > MAX_CACHED {
                return self.inner.dealloc(block, class_layout(c));
            }
            block.cast::<*mut u8>().write(lists.heads[c]);
            lists.heads[c] = block;
            lists.cached[c] += (c + 1) * GRAIN;
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's guarantees for `realloc`, passed on.
        unsafe {
            let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
            match (class_of(layout), class_of(new_layout)) {
                // The block already has room.
                (Some(c), Some(n)) if c == n => block,
                (None, None) => self.inner.realloc(block, layout, new_size),
                _ => {
                    let moved = self.alloc(new_layout);
                    if !moved.is_null() {
                        ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                        self.dealloc(block, layout);
                    }
                    moved
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::System;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    #[test]
    fn a_freed_block_is_reused_for_its_class_only() {
        let pool = Pool::new(System);
        // SAFETY: every block is freed once, with the layout it was
        // allocated (or last reallocated) with.
        unsafe {
            let a = pool.alloc(layout(20, 1));
            pool.dealloc(a, layout(20, 1));
            assert_eq!(pool.cached_bytes(), 32);
            // Same class (17..=32 bytes): the same block.
            let b = pool.alloc(layout(32, 8));
            assert_eq!(a, b);
            assert_eq!(pool.cached_bytes(), 0);
            // Another class: a new block.
            let c = pool.alloc(layout(10, 1));
            assert_ne!(c, b);
            pool.dealloc(b, layout(32, 8));
            pool.dealloc(c, layout(10, 1));
            assert_eq!(pool.cached_bytes(), 48);
        }
    }

    #[test]
    fn blocks_keep_their_contents_through_realloc() {
        let pool = Pool::new(System);
        // SAFETY: every block is freed once, with the layout it was
        // allocated (or last reallocated) with.
        unsafe {
            let mut size = 1;
            let mut p = pool.alloc(layout(size, 1));
            p.write(7);
            // Through every class and past the largest, then back down.
            for next in [5, 16, 17, 100, 256, 257, 4000, 300, 200, 3] {
                p = pool.realloc(p, layout(size, 1), next);
                assert_eq!(p.read(), 7, "after realloc from {size} to {next}");
                assert_eq!(p as usize % GRAIN, 0);
                size = next;
            }
            pool.dealloc(p, layout(size, 1));
        }
    }

    #[test]
    fn large_or_overaligned_blocks_are_not_pooled() {
        let pool = Pool::new(System);
        // SAFETY: every block is freed once, with the layout it was
        // allocated (or last reallocated) with.
        unsafe {
            for l in [layout(257, 1), layout(64, 32), layout(10_000, 8)] {
                let p = pool.alloc(l);
                assert!(!p.is_null());
                assert_eq!(p as usize % l.align(), 0);
                pool.dealloc(p, l);
                assert_eq!(pool.cached_bytes(), 0);
            }
        }
    }

    #[test]
    fn each_class_keeps_a_bounded_number_of_bytes() {
        let pool = Pool::new(System);
        let l = layout(64, 8);
        // SAFETY: every block is freed once, with the layout it was
        // allocated with.
        unsafe {
            let blocks: Vec<*mut u8> = (0..2 * MAX_CACHED / 64).map(|_| pool.alloc(l)).collect();
            for &b in &blocks {
                pool.dealloc(b, l);
            }
            assert_eq!(pool.cached_bytes(), MAX_CACHED);
            // Every block is handed out again before any new one.
            let again: Vec<*mut u8> = (0..MAX_CACHED / 64).map(|_| pool.alloc(l)).collect();
            assert!(again.iter().all(|p| blocks.contains(p)));
            assert_eq!(pool.cached_bytes(), 0);
            for b in again {
                pool.dealloc(b, l);
            }
        }
    }
}
