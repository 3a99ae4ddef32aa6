//! Video clips from frame folders: a folder per video holding numbered JPEG/PNG frames, or (images
//! mode) a folder of images, each one sample.
//!
//! A sample is one video; each epoch draws, per (seed, epoch, video), the clip's first frame
//! uniformly among the starts whose clip (`clip_len` frames, `frame_stride` apart) fits inside
//! the video, and the crop window (centre, or uniform when `random_crop`). Frames are decoded,
//! scaled to cover `size`, cropped, and written into the batch buffer `(B, T, H, W, 3)`.
//!
//! [`ClipSet`] holds the loader policy (`python.rs` only converts arguments and maps errors):
//! argument validation ([`ClipConfig::validate`]), discovery ([`scan`], [`scan_images`]), the
//! epoch plan of a rank, the resume fingerprint, and the skip rule of [`ClipSet::load_batch`].
//! `vqfast.data.clips.PyVideoClipLoader` is the pure-Python reference of all of it.
use crate::error::{Error, ErrorKind, Location, Result};
use crate::frames;
use crate::plan::{self, mix, PlanConfig, RankPlan, Rng};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One video: a folder of frame files, or (feature `video`) a video file with its frame index.
#[derive(Debug, Clone)]
pub struct Video {
    /// The folder (or the video file).
    pub dir: PathBuf,
    pub frames: Vec<PathBuf>,
    #[cfg(feature = "video")]
    pub file: Option<std::sync::Arc<crate::video_file::FrameIndex>>,
}

impl Video {
    pub fn len(&self) -> usize {
        #[cfg(feature = "video")]
        if let Some(idx) = &self.file {
            return idx.pts.len();
        }
        self.frames.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClipConfig {
    pub clip_len: usize,
    pub frame_stride: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub random_crop: bool,
    pub seed: u64,
    /// Per-clip decode deadline in seconds (positive, finite, at most [`MAX_TIMEOUT_S`]).
    pub timeout_s: f64,
    /// Images mode: every JPEG/PNG file directly in the root is one sample, a 1-frame video whose
    /// frame fills all `clip_len` slots of its clip (`frame_stride` is ignored).
    pub images: bool,
}

/// Largest accepted `timeout_s` (about 31 years: "no deadline").
pub const MAX_TIMEOUT_S: f64 = 1e9;

impl ClipConfig {
    /// Reject arguments the loader cannot work with (an `Argument` error, Python `ValueError`).
    pub fn validate(&self) -> Result<()> {
        if self.clip_len == 0 || self.frame_stride == 0 || self.out_h == 0 || self.out_w == 0 {
            return Err(Error::argument(format!(
                "clip_len ({}), frame_stride ({}) and size ({}, {}) must be >= 1",
                self.clip_len, self.frame_stride, self.out_h, self.out_w
            )));
        }
        if !(self.timeout_s > 0.0 && self.timeout_s <= MAX_TIMEOUT_S) {
            return Err(Error::argument(format!(
                "timeout_s must be a positive number of seconds (at most {MAX_TIMEOUT_S:e}), got {}",
                self.timeout_s
            )));
        }
        if (self.clip_len - 1).checked_mul(self.frame_stride).and_then(|s| s.checked_add(1)).is_none() {
            return Err(Error::argument(format!(
                "clip_len ({}) x frame_stride ({}) overflows: a clip cannot span that many frames",
                self.clip_len, self.frame_stride
            )));
        }
        let bytes = [self.out_h, self.out_w, 3].iter().try_fold(self.clip_len, |a, &b| a.checked_mul(b));
        if bytes.is_none_or(|b| b > isize::MAX as usize) {
            return Err(Error::argument(format!(
                "a clip of {} frames of size ({}, {}) is too large to allocate",
                self.clip_len, self.out_h, self.out_w
            )));
        }
        Ok(())
    }
    /// Frames a clip spans from its first to its last frame, inclusive (1 in images mode).
    pub fn span(&self) -> usize {
        if self.images {
            1
        } else {
            (self.clip_len - 1) * self.frame_stride + 1
        }
    }
    pub fn clip_bytes(&self) -> usize {
        self.clip_len * self.out_h * self.out_w * 3
    }
    pub fn timeout(&self) -> Duration {
        Duration::try_from_secs_f64(self.timeout_s).unwrap_or(Duration::from_secs(MAX_TIMEOUT_S as u64))
    }
}

fn has_frame_ext(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()).as_deref(),
        Some("jpg" | "jpeg" | "png")
    )
}

/// Sort key of frames (and of images in images mode): the last run of ASCII digits in the stem as
/// a number (no digits or more than 64 bits: `u64::MAX`), then the stem, then the file name.
pub fn frame_key(p: &Path) -> (u64, String, String) {
    let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    let name = p.file_name().and_then(|s| s.to_str()).unwrap_or("");
    let digits: String = stem.chars().rev().skip_while(|c| !c.is_ascii_digit()).take_while(|c| c.is_ascii_digit()).collect();
    let n = digits.chars().rev().collect::<String>().parse::<u64>().unwrap_or(u64::MAX);
    (n, stem.to_string(), name.to_string())
}

fn looks_like_video_file(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()).as_deref(),
        Some("mp4" | "mkv" | "webm" | "avi" | "mov" | "m4v" | "ts" | "mpg")
    )
}

fn list_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, &e))?;
    Ok(rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
}

/// Scan `root`: every sub-folder (sorted by name) holding at least one `.jpg`/`.jpeg`/`.png` frame
/// is a video, its frames sorted by [`frame_key`]; folders with fewer than `min_frames` frames are
/// left out and returned as too short. With the `video` feature, every video file directly in
/// `root` is a video too (after the folders).
pub fn scan(root: &Path, min_frames: usize) -> Result<(Vec<Video>, Vec<PathBuf>)> {
    let entries = list_dir(root)?;
    let mut dirs: Vec<PathBuf> = entries.iter().filter(|p| p.is_dir()).cloned().collect();
    dirs.sort();
    let mut files: Vec<PathBuf> = entries.iter().filter(|p| p.is_file() && looks_like_video_file(p)).cloned().collect();
    files.sort();
    let mut videos = Vec::new();
    let mut short = Vec::new();
    for dir in dirs {
        let mut fs: Vec<PathBuf> = list_dir(&dir)?.into_iter().filter(|p| has_frame_ext(p)).collect();
        if fs.is_empty() {
            continue;
        }
        fs.sort_by_cached_key(|p| frame_key(p));
        if fs.len() < min_frames {
            short.push(dir);
        } else {
            videos.push(Video {
                dir,
                frames: fs,
                #[cfg(feature = "video")]
                file: None,
            });
        }
    }
    #[cfg(feature = "video")]
    for f in files {
        let idx = crate::video_file::index(&f)?;
        if idx.pts.len() < min_frames {
            short.push(f);
        } else {
            videos.push(Video { dir: f, frames: Vec::new(), file: Some(std::sync::Arc::new(idx)) });
        }
    }
    #[cfg(not(feature = "video"))]
    if videos.is_empty() && !files.is_empty() {
        return Err(Error::new(
            ErrorKind::Unsupported,
            &files[0],
            Location::None,
            format!(
                "{} video file(s) under {} but this build of vqfast has no `video` feature: extract frames with \
                 `python -m vqfast.io.extract_frames` or rebuild with FFmpeg support (see README)",
                files.len(),
                root.display()
            ),
        ));
    }
    Ok((videos, short))
}

/// Images mode: every `.jpg`/`.jpeg`/`.png` file directly in `root` (sorted by [`frame_key`]) is
/// one sample, a video of one frame whose `dir` is the image itself. Sub-folders are ignored.
pub fn scan_images(root: &Path) -> Result<Vec<Video>> {
    let mut fs: Vec<PathBuf> = list_dir(root)?.into_iter().filter(|p| p.is_file() && has_frame_ext(p)).collect();
    fs.sort_by_cached_key(|p| frame_key(p));
    Ok(fs
        .into_iter()
        .map(|p| Video {
            dir: p.clone(),
            frames: vec![p],
            #[cfg(feature = "video")]
            file: None,
        })
        .collect())
}

/// First frame of video `vid`'s clip in `epoch`, and the rng for its crop.
pub fn clip_start(cfg: &ClipConfig, epoch: u64, vid: u64, n_frames: usize) -> (usize, Rng) {
    let mut rng = Rng::new(mix(cfg.seed, epoch, 0xC1_1900_0000 ^ vid));
    let choices = n_frames.saturating_sub(cfg.span()) + 1;
    (rng.below(choices as u64) as usize, rng)
}

/// Frame indices of the clip (images mode: frame 0, `clip_len` times).
pub fn clip_frames(cfg: &ClipConfig, start: usize) -> Vec<usize> {
    if cfg.images {
        return vec![0; cfg.clip_len];
    }
    (0..cfg.clip_len).map(|t| start + t * cfg.frame_stride).collect()
}

/// Decode one clip into `dst` (`clip_len * H * W * 3` bytes).
pub fn load_clip(video: &Video, cfg: &ClipConfig, epoch: u64, vid: u64, dst: &mut [u8]) -> Result<()> {
    let (start, mut rng) = clip_start(cfg, epoch, vid, video.len());
    let wanted = clip_frames(cfg, start);
    if wanted.last().is_some_and(|&f| f >= video.len()) || dst.len() != cfg.clip_bytes() {
        return Err(Error::new(
            ErrorKind::Argument,
            &video.dir,
            Location::None,
            format!("a clip of {} frames does not fit this video of {} frames", cfg.clip_len, video.len()),
        ));
    }
    let frame_bytes = cfg.out_h * cfg.out_w * 3;
    let now = Instant::now();
    let deadline = now.checked_add(cfg.timeout()).unwrap_or(now + Duration::from_secs(86_400));
    // Video files: swscale converts and scales to the covering size in one pass; only the crop is left.
    #[cfg(feature = "video")]
    let decoded: Option<Vec<frames::Rgb>> = match &video.file {
        Some(idx) => {
            let (rh, rw) = frames::cover_size(idx.height, idx.width, cfg.out_h, cfg.out_w);
            Some(crate::video_file::decode_frames(&video.dir, idx, &wanted, (rw, rh), deadline)?)
        }
        None => None,
    };
    // The crop window (and the resize plan) is chosen at the first frame and kept for the clip.
    let mut resizer: Option<(frames::Resizer, usize, usize)> = None;
    for (t, &fi) in wanted.iter().enumerate() {
        if Instant::now() > deadline {
            return Err(Error::new(ErrorKind::Decode, &video.dir, Location::None, format!("clip decode exceeded its deadline ({:?})", cfg.timeout())));
        }
        if t > 0 && wanted[t - 1] == fi {
            // the same frame again (images mode): copy the slot, do not decode twice
            dst.copy_within((t - 1) * frame_bytes..t * frame_bytes, t * frame_bytes);
            continue;
        }
        #[cfg(feature = "video")]
        if let Some(imgs) = &decoded {
            let img = &imgs[t];
            place(cfg, &mut rng, &mut resizer, img, &video.dir)?;
            resizer.as_ref().unwrap().0.run(img, &mut dst[t * frame_bytes..(t + 1) * frame_bytes]);
            continue;
        }
        let path = &video.frames[fi];
        let img = frames::decode_file(path)?;
        place(cfg, &mut rng, &mut resizer, &img, path)?;
        resizer.as_ref().unwrap().0.run(&img, &mut dst[t * frame_bytes..(t + 1) * frame_bytes]);
    }
    Ok(())
}

/// Choose the crop window at a clip's first frame; later frames must have the same size.
fn place(cfg: &ClipConfig, rng: &mut Rng, resizer: &mut Option<(frames::Resizer, usize, usize)>, img: &frames::Rgb, path: &Path) -> Result<()> {
    match resizer {
        Some((r, _, _)) if r.fits(img) => Ok(()),
        Some((_, h, w)) => Err(Error::new(
            ErrorKind::Decode,
            path,
            Location::None,
            format!("frame is {}x{} but earlier frames of the clip are {w}x{h}", img.w, img.h),
        )),
        None => {
            let (rh, rw) = frames::cover_size(img.h, img.w, cfg.out_h, cfg.out_w);
            let (top, left) = if cfg.random_crop {
                (rng.below((rh - cfg.out_h + 1) as u64) as usize, rng.below((rw - cfg.out_w + 1) as u64) as usize)
            } else {
                ((rh - cfg.out_h) / 2, (rw - cfg.out_w) / 2)
            };
            *resizer = Some((frames::Resizer::new(img.h, img.w, cfg.out_h, cfg.out_w, top, left), img.h, img.w));
            Ok(())
        }
    }
}

/// What to do with a clip that fails to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// The first failure is the batch's error.
    Raise,
    /// Replace the clip by the skip rule of [`ClipSet::load_batch`].
    Skip,
}

/// At most this many replacement clips are tried per batch (and never more than the rank's plan holds).
pub const MAX_REPLACEMENTS: usize = 64;

/// Replacement attempts allowed per batch for a rank plan of `rank_samples` samples.
pub fn replacement_budget(rank_samples: usize) -> usize {
    rank_samples.min(MAX_REPLACEMENTS)
}

/// One loaded batch: the video id of every clip (after replacements), the frames
/// `(B, T, H, W, 3)` uint8, and the failures that were skipped (in order).
#[derive(Debug)]
pub struct ClipBatch {
    pub ids: Vec<u64>,
    pub frames: Vec<u8>,
    pub errors: Vec<Error>,
}

/// The videos of one root and the clip settings: the loader's whole policy.
#[derive(Debug)]
pub struct ClipSet {
    pub root: PathBuf,
    pub clip: ClipConfig,
    pub videos: Vec<Video>,
    /// Video folders with fewer frames than one clip spans (left out).
    pub short: Vec<PathBuf>,
}

impl ClipSet {
    /// Validate `clip` and scan `root` (videos, or images when `clip.images`). An empty set is not
    /// an error here (the caller words that one).
    pub fn open(root: &Path, clip: ClipConfig) -> Result<ClipSet> {
        clip.validate()?;
        let (videos, short) = if clip.images { (scan_images(root)?, Vec::new()) } else { scan(root, clip.span())? };
        Ok(ClipSet { root: root.to_path_buf(), clip, videos, short })
    }

    /// Frames per video (1 per image in images mode).
    pub fn frame_counts(&self) -> Vec<u64> {
        self.videos.iter().map(|v| v.len() as u64).collect()
    }

    pub fn num_batches(&self, cfg: &PlanConfig) -> usize {
        plan::num_batches(self.videos.len() as u64, cfg)
    }

    /// Rank `cfg.rank`'s videos for `epoch`, batch after batch (a video is a group of one sample).
    pub fn rank_plan(&self, cfg: &PlanConfig, epoch: u64) -> RankPlan {
        let sizes = vec![1u64; self.videos.len()];
        plan::rank_plan(&plan::epoch_order(&sizes, cfg, epoch), cfg)
    }

    /// `(video id, first frame)` of every clip of the rank's `epoch`, in order.
    pub fn clip_plan(&self, cfg: &PlanConfig, epoch: u64) -> Vec<(u64, usize)> {
        let rp = self.rank_plan(cfg, epoch);
        rp.samples.iter().map(|&v| (v, clip_start(&self.clip, epoch, v, self.videos[v as usize].len()).0)).collect()
    }

    /// Resume check: frame counts, plan settings (not rank/epoch), clip_len, frame_stride, images mode.
    pub fn fingerprint(&self, cfg: &PlanConfig) -> u64 {
        let c = &self.clip;
        let mut h = plan::fingerprint(&self.frame_counts(), cfg)
            ^ plan::splitmix64((c.clip_len as u64).wrapping_mul(1_000_003).wrapping_add(c.frame_stride as u64));
        if c.images {
            h ^= plan::splitmix64(IMAGES_TAG);
        }
        h
    }

    /// Load batch `k` of the rank plan `rp` (of `epoch`).
    ///
    /// Skip rule (`OnError::Skip`), identical in `PyVideoClipLoader`: the batch keeps its size. A
    /// clip that fails is replaced by the clip of the next sample of the rank's epoch order *after
    /// this batch*, wrapping around (`rp.samples[(end + j) % len]` for j = 0, 1, 2, ... over the
    /// whole batch, so a second failure takes the sample after the first replacement). Each
    /// failure is returned in `errors` (its message starts with the file). After
    /// `replacement_budget(rp.samples.len())` replacements (at most [`MAX_REPLACEMENTS`]) a
    /// further failure ends the batch with a `Decode` error naming the root and the last errors.
    /// `OnError::Raise`: the first failure is returned as it is.
    pub fn load_batch(&self, rp: &RankPlan, k: usize, epoch: u64, on_error: OnError) -> Result<ClipBatch> {
        if k >= rp.num_batches() {
            return Err(Error::argument(format!("batch {k} is out of range: the plan has {} batches", rp.num_batches())));
        }
        let ids = rp.batch(k);
        let cb = self.clip.clip_bytes();
        let mut frames = vec![0u8; ids.len() * cb];
        let mut out_ids = Vec::with_capacity(ids.len());
        let mut errors: Vec<Error> = Vec::new();
        let n = rp.samples.len();
        let budget = replacement_budget(n);
        let mut next = rp.batch_starts[k + 1];
        let mut used = 0usize;
        for (i, &vid) in ids.iter().enumerate() {
            let dst = &mut frames[i * cb..(i + 1) * cb];
            let mut v = vid;
            loop {
                let video = self.videos.get(v as usize).ok_or_else(|| Error::argument(format!("video id {v} out of range")))?;
                // A panic while loading one clip is that clip's failure (skip mode skips it).
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| load_clip(video, &self.clip, epoch, v, &mut *dst)));
                let r = r.unwrap_or_else(|p| {
                    Err(Error::new(ErrorKind::Decode, &video.dir, Location::None, format!("panic while loading a clip: {}", crate::error::panic_message(&*p))))
                });
                match r {
                    Ok(()) => break,
                    Err(e) if on_error == OnError::Raise => return Err(e),
                    Err(e) => {
                        errors.push(e);
                        if used == budget {
                            return Err(self.give_up(k, &errors, budget));
                        }
                        v = rp.samples[next % n];
                        next += 1;
                        used += 1;
                    }
                }
            }
            out_ids.push(v);
        }
        Ok(ClipBatch { ids: out_ids, frames, errors })
    }

    fn give_up(&self, k: usize, errors: &[Error], budget: usize) -> Error {
        let last: Vec<String> = errors.iter().rev().take(3).rev().map(|e| e.to_string()).collect();
        Error::new(
            ErrorKind::Decode,
            &self.root,
            Location::None,
            format!(
                "cannot fill batch {k}: {} clip(s) failed to load, and so did all {budget} replacement(s) allowed \
                 (the next clips of this rank's epoch order); last errors: {}",
                errors.len(),
                last.join(" | ")
            ),
        )
    }
}

/// Mixed into the fingerprint of an images-mode set.
const IMAGES_TAG: u64 = 0x1A6E_5000_0000_0001;

#[cfg(test)]
mod tests {
    use super::*;

    fn write_png(path: &Path, w: u32, h: u32, v: u8) {
        let f = std::fs::File::create(path).unwrap();
        let mut enc = png::Encoder::new(std::io::BufWriter::new(f), w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc.write_header().unwrap();
        wr.write_image_data(&vec![v; (w * h * 3) as usize]).unwrap();
    }

    fn tmp(name: &str) -> PathBuf {
        let root = std::env::temp_dir().join(format!("vqfast-clips-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        root
    }

    fn clip_cfg(clip_len: usize, frame_stride: usize, h: usize, w: usize) -> ClipConfig {
        ClipConfig { clip_len, frame_stride, out_h: h, out_w: w, random_crop: false, seed: 3, timeout_s: 30.0, images: false }
    }

    fn plan_cfg(batch_size: usize, rank: usize, world_size: usize, drop_last: bool) -> PlanConfig {
        PlanConfig { batch_size, shuffle: true, seed: 5, rank, world_size, drop_last, block_groups: 0 }
    }

    /// `n_videos` folders of `frames` 4x4 frames; video v's pixels are all `v * 10 + 1`.
    fn videos(name: &str, n_videos: usize, frames: usize) -> PathBuf {
        let root = tmp(name);
        for v in 0..n_videos {
            let d = root.join(format!("v{v:02}"));
            std::fs::create_dir_all(&d).unwrap();
            for i in 0..frames {
                write_png(&d.join(format!("{i}.png")), 4, 4, v as u8 * 10 + 1);
            }
        }
        root
    }

    fn corrupt(path: &Path) {
        std::fs::write(path, b"\x89PNG\r\n\x1a\n garbage").unwrap();
    }

    #[test]
    fn clips_are_consecutive_at_stride_and_inside_the_video() {
        let root = tmp("stride");
        for (v, n) in [("a", 12usize), ("b", 30), ("c", 3)] {
            let d = root.join(v);
            std::fs::create_dir_all(&d).unwrap();
            for i in 0..n {
                // unpadded numbers: sorting must be numeric
                write_png(&d.join(format!("frame_{i}.png")), 8, 6, i as u8 * 5);
            }
        }
        let cfg = clip_cfg(4, 3, 6, 8);
        let (videos, short) = scan(&root, cfg.span()).unwrap();
        assert_eq!(videos.len(), 2);
        assert_eq!(short.len(), 1);
        for epoch in 0..20 {
            for (vid, video) in videos.iter().enumerate() {
                let mut buf = vec![0u8; cfg.clip_bytes()];
                load_clip(video, &cfg, epoch, vid as u64, &mut buf).unwrap();
                let idx: Vec<usize> = buf.chunks(6 * 8 * 3).map(|f| f[0] as usize / 5).collect();
                for t in 1..idx.len() {
                    assert_eq!(idx[t], idx[t - 1] + 3);
                }
                assert!(idx[3] < video.len());
            }
        }
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn numeric_frame_order() {
        let mut v = vec![PathBuf::from("x/f10.png"), PathBuf::from("x/f2.png"), PathBuf::from("x/f1.png"), PathBuf::from("x/a.png")];
        v.sort_by_cached_key(|p| frame_key(p));
        assert_eq!(v, ["x/f1.png", "x/f2.png", "x/f10.png", "x/a.png"].map(PathBuf::from));
        // ties on number and stem: the file name decides (deterministic, whatever read_dir returns)
        let mut v = vec![PathBuf::from("x/1.png"), PathBuf::from("x/1.jpg"), PathBuf::from("x/01.png")];
        v.sort_by_cached_key(|p| frame_key(p));
        assert_eq!(v, ["x/01.png", "x/1.jpg", "x/1.png"].map(PathBuf::from));
        assert_eq!(frame_key(Path::new("x/99999999999999999999999.png")).0, u64::MAX);
    }

    #[test]
    fn validate_rejects_bad_arguments() {
        assert!(clip_cfg(2, 1, 8, 8).validate().is_ok());
        for bad in [clip_cfg(0, 1, 8, 8), clip_cfg(2, 0, 8, 8), clip_cfg(2, 1, 0, 8), clip_cfg(2, 1, 8, 0)] {
            let e = bad.validate().unwrap_err();
            assert_eq!(e.kind, ErrorKind::Argument);
            assert!(e.reason.contains("must be >= 1"), "{e}");
        }
        for t in [0.0, -1.0, f64::NAN, f64::INFINITY, 2e9] {
            let e = ClipConfig { timeout_s: t, ..clip_cfg(2, 1, 8, 8) }.validate().unwrap_err();
            assert!(e.reason.starts_with("timeout_s must be a positive number"), "{e}");
        }
        let e = clip_cfg(usize::MAX / 2, 3, 8, 8).validate().unwrap_err();
        assert!(e.reason.contains("overflows"), "{e}");
        let e = clip_cfg(1 << 22, 1, 1 << 22, 1 << 22).validate().unwrap_err();
        assert!(e.reason.contains("too large"), "{e}");
        // ClipSet::open validates before touching the disk
        let e = ClipSet::open(Path::new("/nonexistent/vqfast"), clip_cfg(0, 1, 8, 8)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Argument);
        let e = ClipSet::open(Path::new("/nonexistent/vqfast"), clip_cfg(1, 1, 8, 8)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound);
    }

    #[test]
    fn skip_replaces_a_bad_clip_by_the_next_sample_after_the_batch() {
        let root = videos("skip", 7, 2);
        let set = ClipSet::open(&root, clip_cfg(2, 1, 4, 4)).unwrap();
        assert_eq!(set.videos.len(), 7);
        let cfg = plan_cfg(2, 0, 1, true);
        let epoch = 1;
        let rp = set.rank_plan(&cfg, epoch);
        assert_eq!(rp.num_batches(), 3);
        // break the first video of batch 1 (frame 1: both frames are in every clip)
        let bad = rp.batch(1)[0];
        corrupt(&set.videos[bad as usize].frames[1]);
        let raise = set.load_batch(&rp, 1, epoch, OnError::Raise).unwrap_err();
        assert_eq!(raise.kind, ErrorKind::Decode);
        assert!(raise.to_string().starts_with(&set.videos[bad as usize].frames[1].display().to_string()));
        let b = set.load_batch(&rp, 1, epoch, OnError::Skip).unwrap();
        let want = rp.samples[rp.batch_starts[2]]; // the first sample after batch 1
        assert_ne!(want, bad);
        assert_eq!(b.ids, vec![want, rp.batch(1)[1]]);
        assert_eq!(b.errors.len(), 1);
        assert!(b.errors[0].to_string().contains(&format!("v{bad:02}")));
        // the replacement's frames are really video `want`'s
        assert!(b.frames[..32 * 3].iter().all(|&p| p == want as u8 * 10 + 1));
        // the last batch wraps around to the rank's first samples
        let last = rp.num_batches() - 1;
        let bad_last = rp.batch(last)[1];
        corrupt(&set.videos[bad_last as usize].frames[0]);
        let b = set.load_batch(&rp, last, epoch, OnError::Skip).unwrap();
        let mut expect = rp.samples[0];
        if expect == bad || expect == bad_last {
            expect = rp.samples[1];
            assert_eq!(b.errors.len(), 2);
        }
        assert_eq!(b.ids[1], expect);
        // untouched batches load without errors
        assert!(set.load_batch(&rp, 0, epoch, OnError::Skip).map(|b| b.errors.is_empty()).unwrap_or(true));
        assert_eq!(set.load_batch(&rp, 3, epoch, OnError::Skip).unwrap_err().kind, ErrorKind::Argument);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn second_failure_takes_the_sample_after_the_first_replacement() {
        let root = videos("skip2", 6, 1);
        let set = ClipSet::open(&root, clip_cfg(1, 1, 4, 4)).unwrap();
        let cfg = plan_cfg(3, 0, 1, true);
        let rp = set.rank_plan(&cfg, 0);
        let b0 = rp.batch(0).to_vec();
        corrupt(&set.videos[b0[0] as usize].frames[0]);
        corrupt(&set.videos[b0[2] as usize].frames[0]);
        let b = set.load_batch(&rp, 0, 0, OnError::Skip).unwrap();
        assert_eq!(b.ids, vec![rp.samples[3], b0[1], rp.samples[4]]);
        assert_eq!(b.errors.len(), 2);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_batch_that_cannot_be_filled_is_an_error_after_the_budget() {
        // small rank plan: the budget is the plan's length
        let root = videos("giveup", 3, 1);
        let set = ClipSet::open(&root, clip_cfg(1, 1, 4, 4)).unwrap();
        for v in &set.videos {
            corrupt(&v.frames[0]);
        }
        let cfg = plan_cfg(1, 0, 1, true);
        let rp = set.rank_plan(&cfg, 0);
        let e = set.load_batch(&rp, 0, 0, OnError::Skip).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Decode);
        assert_eq!(e.path, root);
        assert!(e.reason.starts_with("cannot fill batch 0: 4 clip(s) failed"), "{e}");
        assert!(e.reason.contains("all 3 replacement(s)"), "{e}");
        assert!(e.reason.contains("v0"), "{e}");
        std::fs::remove_dir_all(&root).unwrap();

        // large rank plan: the budget is MAX_REPLACEMENTS
        let root = tmp("giveup-images");
        for i in 0..70 {
            corrupt(&root.join(format!("img{i}.png")));
        }
        let set = ClipSet::open(&root, ClipConfig { images: true, ..clip_cfg(1, 1, 4, 4) }).unwrap();
        assert_eq!(set.videos.len(), 70);
        let cfg = plan_cfg(4, 0, 1, true);
        let rp = set.rank_plan(&cfg, 0);
        assert_eq!(replacement_budget(rp.samples.len()), MAX_REPLACEMENTS);
        let e = set.load_batch(&rp, 2, 0, OnError::Skip).unwrap_err();
        assert!(e.reason.starts_with(&format!("cannot fill batch 2: {} clip(s) failed", MAX_REPLACEMENTS + 1)), "{e}");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn images_mode_repeats_each_image_and_ignores_folders() {
        let root = tmp("images");
        for (i, name) in ["b10.png", "b2.png", "a.png"].iter().enumerate() {
            write_png(&root.join(name), 6, 4, 50 * (i as u8 + 1));
        }
        std::fs::write(root.join("notes.txt"), b"x").unwrap();
        std::fs::create_dir_all(root.join("sub")).unwrap();
        write_png(&root.join("sub").join("0.png"), 6, 4, 1);
        let clip = ClipConfig { images: true, frame_stride: 7, ..clip_cfg(3, 1, 4, 4) };
        let set = ClipSet::open(&root, clip.clone()).unwrap();
        let names: Vec<String> = set.videos.iter().map(|v| v.dir.file_name().unwrap().to_str().unwrap().to_string()).collect();
        assert_eq!(names, ["b2.png", "b10.png", "a.png"]);
        assert_eq!(set.frame_counts(), vec![1, 1, 1]);
        let cfg = PlanConfig { shuffle: false, ..plan_cfg(3, 0, 1, true) };
        let rp = set.rank_plan(&cfg, 0);
        let b = set.load_batch(&rp, 0, 0, OnError::Raise).unwrap();
        assert_eq!(b.ids, vec![0, 1, 2]);
        let per_clip = 3 * 4 * 4 * 3;
        for (i, v) in [100u8, 50, 150].iter().enumerate() {
            assert!(b.frames[i * per_clip..(i + 1) * per_clip].iter().all(|p| p == v));
        }
        assert!(set.clip_plan(&cfg, 4).iter().all(|&(_, start)| start == 0));
        // a video set of the same sizes has another fingerprint
        let as_video = ClipSet { clip: ClipConfig { images: false, ..clip }, root: set.root.clone(), videos: set.videos.clone(), short: vec![] };
        assert_ne!(as_video.fingerprint(&cfg), set.fingerprint(&cfg));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
