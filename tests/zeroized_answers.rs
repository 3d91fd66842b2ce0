//! Proves that reading a secret out of a Vault answer leaves no copy of its value
//! in freed memory: this test binary's allocator looks inside every block the
//! calling thread frees for a marker planted in the secret.
//!
//! Each check is paired with a control doing the same through `serde_json::Value`
//! or a plain `Vec`, which must be caught: the detector itself can fail.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use gbo_fs::vault::kv_answer::{append_zeroizing, parse_v1, parse_v2};
use zeroize::Zeroizing;

/// Stands in for a secret value; never appears in freed memory unless copied.
const MARKER: &[u8] = b"zq7-marker-of-a-secret-value-41f";

/// Freed blocks that held the marker, from any thread that was watching.
static FREED_WITH_MARKER: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static WATCHING: Cell<bool> = const { Cell::new(false) };
}

struct MarkerScanningAllocator;

unsafe impl GlobalAlloc for MarkerScanningAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        System.alloc(layout)
    }

    // `realloc` keeps the default (alloc, copy, dealloc): the old block is scanned too.
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if WATCHING.with(Cell::get) {
            let block = std::slice::from_raw_parts(ptr, layout.size());
            if block.windows(MARKER.len()).any(|w| w == MARKER) {
                FREED_WITH_MARKER.fetch_add(1, Ordering::SeqCst);
            }
        }
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: MarkerScanningAllocator = MarkerScanningAllocator;

/// How many freed blocks held the marker while `work` ran on this thread.
/// Tests run on their own threads, so each counts only its own frees — but the
/// counter is shared, so the checks run one after another inside one test.
fn freed_copies(work: impl FnOnce()) -> usize {
    let before = FREED_WITH_MARKER.load(Ordering::SeqCst);
    WATCHING.with(|w| w.set(true));
    work();
    WATCHING.with(|w| w.set(false));
    FREED_WITH_MARKER.load(Ordering::SeqCst) - before
}

/// A KV answer built in place in a zeroized buffer (no reallocation), holding
/// the marker in a plain string, in an escaped string and inside an object value.
fn answer_with_marker(v2: bool) -> Zeroizing<Vec<u8>> {
    let mut body = Zeroizing::new(Vec::with_capacity(4096));
    let pieces: [&[u8]; 9] = [
        if v2 {
            b"{\"data\": {\"metadata\": {\"version\": 2}, \"data\": {\"plain\": \""
        } else {
            b"{\"data\": {\"plain\": \""
        },
        MARKER,
        b"\", \"pem\": \"-----BEGIN-----\\n",
        MARKER,
        b"\\u00e9\\\"end\\\"\\n\", \"nested\": {\"user\": \"app\", \"pass\": \"",
        MARKER,
        b"\"}, \"port\": 5432",
        if v2 { b"}}" } else { b"}" },
        b"}",
    ];
    for piece in pieces {
        body.extend_from_slice(piece);
    }
    assert_eq!(body.capacity(), 4096, "the test body must not reallocate");
    body
}

#[test]
fn parsing_and_buffering_an_answer_leave_no_copy_of_a_secret_in_freed_memory() {
    // KV v2 and v1 answers: parse, use, drop.
    for v2 in [true, false] {
        let copies = freed_copies(|| {
            let body = answer_with_marker(v2);
            let secret = if v2 {
                parse_v2(&body, "secret/data/gbo/db").unwrap().unwrap()
            } else {
                parse_v1(&body, "gbo/db").unwrap()
            };
            assert!(secret.values["plain"].starts_with(MARKER));
            assert!(secret.values["pem"]
                .windows(MARKER.len())
                .any(|w| w == MARKER));
            assert!(secret.values["nested"]
                .windows(MARKER.len())
                .any(|w| w == MARKER));
            drop(secret);
            drop(body);
        });
        assert_eq!(copies, 0, "parsing (v2: {v2}) left copies of the value");
    }

    // Control: the same answer through serde_json::Value is caught.
    let copies = freed_copies(|| {
        let body = answer_with_marker(true);
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        drop(value);
    });
    assert!(
        copies >= 3,
        "the detector missed serde_json's copies ({copies})"
    );

    // The response buffer grows chunk by chunk without leaving copies behind.
    let copies = freed_copies(|| {
        let mut buffer = Zeroizing::new(Vec::new());
        for _ in 0..64 {
            append_zeroizing(&mut buffer, MARKER);
        }
        assert_eq!(buffer.len(), 64 * MARKER.len());
    });
    assert_eq!(copies, 0, "growing the buffer left copies");

    // Control: a plain `Vec` (even wrapped in Zeroizing) frees its old blocks as they are.
    let copies = freed_copies(|| {
        let mut buffer = Zeroizing::new(Vec::new());
        for _ in 0..64 {
            buffer.extend_from_slice(MARKER);
        }
    });
    assert!(copies > 0, "the detector missed Vec's reallocations");
}
