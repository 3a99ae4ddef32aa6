//! Process-wide resource limits of the readers (`.pt` pickle VM, frame decoder), settable from
//! Python with `vqfast.io.set_limits(...)`. Each refusal names the limit it hit, so a user with a
//! legitimately huge file knows which one to raise.
//!
//! Defaults are far above anything `torch.save` or a camera writes (a 10^5-tensor checkpoint
//! builds about 10^6 pickle values; an 8K frame has 3.3·10^7 pixels).
use std::sync::atomic::{AtomicU64, Ordering};

/// Values (nodes) the pickle VM may build, counting every push and every element copied.
pub const DEFAULT_MAX_NODES: u64 = 1 << 24;
/// Bytes of str/bytes/bytearray/long payload the pickle VM may materialise (shared values count once).
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;
/// Container nesting depth of a loaded object.
pub const DEFAULT_MAX_DEPTH: u64 = 200;
/// Pixels (width·height) of one decoded JPEG/PNG frame, checked from its header before allocating.
pub const DEFAULT_MAX_FRAME_PIXELS: u64 = 1 << 28;

static MAX_NODES: AtomicU64 = AtomicU64::new(DEFAULT_MAX_NODES);
static MAX_BYTES: AtomicU64 = AtomicU64::new(DEFAULT_MAX_BYTES);
static MAX_DEPTH: AtomicU64 = AtomicU64::new(DEFAULT_MAX_DEPTH);
static MAX_FRAME_PIXELS: AtomicU64 = AtomicU64::new(DEFAULT_MAX_FRAME_PIXELS);

/// The current limits (a snapshot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReaderLimits {
    pub max_nodes: u64,
    pub max_bytes: u64,
    pub max_depth: u64,
    pub max_frame_pixels: u64,
}

impl Default for ReaderLimits {
    fn default() -> Self {
        ReaderLimits {
            max_nodes: DEFAULT_MAX_NODES,
            max_bytes: DEFAULT_MAX_BYTES,
            max_depth: DEFAULT_MAX_DEPTH,
            max_frame_pixels: DEFAULT_MAX_FRAME_PIXELS,
        }
    }
}

pub fn get() -> ReaderLimits {
    ReaderLimits {
        max_nodes: MAX_NODES.load(Ordering::Relaxed),
        max_bytes: MAX_BYTES.load(Ordering::Relaxed),
        max_depth: MAX_DEPTH.load(Ordering::Relaxed),
        max_frame_pixels: MAX_FRAME_PIXELS.load(Ordering::Relaxed),
    }
}

/// Most nesting depth allowed: the converters recurse once per level, and 1000 levels fit in an
/// 8 MiB thread stack (the default), even unoptimised (tested in `pickle::tests`).
pub const MAX_MAX_DEPTH: u64 = 1000;

/// Set the limits; every value must be positive, the depth at most [`MAX_MAX_DEPTH`].
pub fn set(l: ReaderLimits) -> Result<(), String> {
    for (name, v) in [("max_nodes", l.max_nodes), ("max_bytes", l.max_bytes), ("max_depth", l.max_depth), ("max_frame_pixels", l.max_frame_pixels)] {
        if v == 0 {
            return Err(format!("{name} must be positive, got 0"));
        }
    }
    if l.max_depth > MAX_MAX_DEPTH {
        return Err(format!("max_depth must be at most {MAX_MAX_DEPTH}, got {}", l.max_depth));
    }
    MAX_NODES.store(l.max_nodes, Ordering::Relaxed);
    MAX_BYTES.store(l.max_bytes, Ordering::Relaxed);
    MAX_DEPTH.store(l.max_depth, Ordering::Relaxed);
    MAX_FRAME_PIXELS.store(l.max_frame_pixels, Ordering::Relaxed);
    Ok(())
}

/// Pickle VM limits from the current settings.
pub fn pickle_limits() -> crate::pickle::Limits {
    let l = get();
    let sat = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    crate::pickle::Limits { max_nodes: sat(l.max_nodes), max_bytes: sat(l.max_bytes), max_depth: sat(l.max_depth), ..crate::pickle::Limits::default() }
}

pub fn max_frame_pixels() -> u64 {
    MAX_FRAME_PIXELS.load(Ordering::Relaxed)
}
