//! The process's allocator: mimalloc, counting the bytes the program holds, so that `/metrics`
//! (and `worldfleet soak`) can tell memory the program keeps from memory the allocator keeps
//! (resident but free, or fragmented); and [`no_transparent_huge_pages`].
//!
//! Each thread adds its allocations to a slot it alone writes (a plain load and store, no
//! locked instruction on the hot path); threads past the slots share one atomic slot. A block
//! freed on another thread than the one that allocated it subtracts from the freeing thread's
//! slot, so one slot may go negative: only the sum means anything.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

/// Threads with a slot of their own; later threads share [`SHARED_SLOT`].
const SLOTS: usize = 512;
const SHARED_SLOT: usize = SLOTS;

/// One slot per cache line, so threads do not write each other's lines.
#[repr(align(64))]
struct Slot(AtomicI64);

/// Signed byte counts, one slot per thread (see the module comment).
struct Counts([Slot; SLOTS + 1]);

impl Counts {
    const fn new() -> Self {
        Self([const { Slot(AtomicI64::new(0)) }; SLOTS + 1])
    }

    /// Adds `delta` to the calling thread's slot.
    fn add(&self, delta: i64) {
        let slot = MY_SLOT
            .try_with(|slot| {
                if slot.get() == usize::MAX {
                    let next = NEXT_SLOT.fetch_add(1, Ordering::Relaxed);
                    slot.set(next.min(SHARED_SLOT));
                }
                slot.get()
            })
            .unwrap_or(SHARED_SLOT);
        let counter = &self.0[slot].0;
        if slot == SHARED_SLOT {
            counter.fetch_add(delta, Ordering::Relaxed);
        } else {
            // Only this thread writes this slot (of every `Counts`).
            counter.store(counter.load(Ordering::Relaxed) + delta, Ordering::Relaxed);
        }
    }

    /// The sum of the slots, at least 0.
    fn sum(&self) -> u64 {
        let sum: i64 = self
            .0
            .iter()
            .map(|slot| slot.0.load(Ordering::Relaxed))
            .sum();
        sum.max(0) as u64
    }
}

static COUNTS: Counts = Counts::new();
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's slot index, the same in every `Counts`.
    static MY_SLOT: Cell<usize> = const { Cell::new(usize::MAX) };
}

fn count(delta: i64) {
    COUNTS.add(delta);
}

/// Bytes the program has allocated and not freed (what it holds, before allocator overhead).
pub fn live_bytes() -> u64 {
    COUNTS.sum()
}

/// `mi_option_allow_thp` in mimalloc v2's `mimalloc.h` (the bindings lack the constant).
const MI_OPTION_ALLOW_THP: libmimalloc_sys::mi_option_t = 37;

/// Environment variable: `on` keeps transparent huge pages, `off` (the default) turns them off
/// ([`huge_pages_from_env`]).
pub const HUGE_PAGES_VARIABLE: &str = "WORLDFLEET_HUGE_PAGES";

/// Applies [`HUGE_PAGES_VARIABLE`]: unset or `off` calls [`no_transparent_huge_pages`], `on`
/// leaves the kernel's and mimalloc's defaults; any other value is an error naming it.
pub fn huge_pages_from_env() -> Result<(), String> {
    if huge_pages_off(std::env::var(HUGE_PAGES_VARIABLE).ok().as_deref())? {
        no_transparent_huge_pages();
    }
    Ok(())
}

/// Whether [`HUGE_PAGES_VARIABLE`] set to `value` (`None`: unset) turns huge pages off.
fn huge_pages_off(value: Option<&str>) -> Result<bool, String> {
    match value {
        None | Some("off") => Ok(true),
        Some("on") => Ok(false),
        Some(other) => Err(format!(
            "{HUGE_PAGES_VARIABLE}={other}: give `on` or `off` (the default)"
        )),
    }
}

/// Turns transparent huge pages off for this process (and the processes it starts).
///
/// mimalloc asks for huge pages on its arenas (`madvise(MADV_HUGEPAGE)`), and frees memory
/// back to the OS in 64 KiB pieces. The kernel's `khugepaged` later collapses a region with
/// such holes into a whole 2 MiB page again, making what was freed resident once more: over
/// an hour at 700 events/s the server's resident memory crept up while what it held on the
/// heap stayed flat (README, performance: the soak). mimalloc reads its own switch for this
/// (`MIMALLOC_ALLOW_THP`) before `main`, so the process sets the kernel's flag itself; a
/// no-op where the kernel has no such flag.
pub fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0)` takes integers and touches no memory
        // of ours; an error (an old kernel) leaves things as they were.
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    }
    // SAFETY: an option setter of the allocator in use (an atomic store in mimalloc).
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_ALLOW_THP, 0) };
}

/// mimalloc with a count of the bytes allocated and not yet freed.
pub struct CountingMiMalloc;

// SAFETY: every call is forwarded to mimalloc with the caller's arguments unchanged; the
// counting touches only atomics and a const-initialised thread-local, and never allocates.
unsafe impl GlobalAlloc for CountingMiMalloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as given.
        let pointer = unsafe { mimalloc::MiMalloc.alloc(layout) };
        if !pointer.is_null() {
            count(layout.size() as i64);
        }
        pointer
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as given.
        let pointer = unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) };
        if !pointer.is_null() {
            count(layout.size() as i64);
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: forwarded as given.
        unsafe { mimalloc::MiMalloc.dealloc(pointer, layout) };
        count(-(layout.size() as i64));
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as given.
        let moved = unsafe { mimalloc::MiMalloc.realloc(pointer, layout, new_size) };
        if !moved.is_null() {
            count(new_size as i64 - layout.size() as i64);
        }
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_sum_to_what_is_held_when_blocks_are_freed_on_other_threads() {
        let counts = Counts::new();
        counts.add(1000);
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    counts.add(500);
                    counts.add(-200);
                });
            }
        });
        assert_eq!(counts.sum(), 1000 + 8 * 300);
        // Freed elsewhere: this thread's slot stays positive, the freeing threads' negative.
        std::thread::scope(|scope| {
            scope.spawn(|| counts.add(-3400));
        });
        assert_eq!(counts.sum(), 0);
    }

    #[test]
    fn the_allocator_counts_what_is_held() {
        // Other tests allocate and free at the same time: blocks this large stand out of them.
        const BLOCK: usize = 256 << 20;
        const SLACK: u64 = 64 << 20;
        let before = live_bytes();
        let block = vec![1u8; BLOCK];
        let held = live_bytes();
        assert!(held + SLACK >= before + BLOCK as u64, "{before} -> {held}");
        std::thread::spawn(move || drop(block)).join().unwrap();
        let after = live_bytes();
        assert!(after < before + SLACK, "{before} -> {held} -> {after}");
    }

    #[test]
    fn huge_pages_are_off_unless_asked_for_and_a_typo_is_an_error() {
        assert_eq!(huge_pages_off(None), Ok(true));
        assert_eq!(huge_pages_off(Some("off")), Ok(true));
        assert_eq!(huge_pages_off(Some("on")), Ok(false));
        let error = huge_pages_off(Some("yes")).unwrap_err();
        assert!(error.contains("WORLDFLEET_HUGE_PAGES=yes"), "{error}");
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn huge_pages_can_be_turned_off() {
        no_transparent_huge_pages();
        // SAFETY: `prctl(PR_GET_THP_DISABLE)` takes integers and touches no memory of ours.
        let off = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
        assert_eq!(off, 1, "the kernel's THP flag is set for the process");
    }
}
