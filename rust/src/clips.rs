//! Video clips from frame folders: a folder per video holding numbered JPEG/PNG frames.
//!
//! A sample is one video; each epoch draws, per (seed, epoch, video), the clip's first frame
//! uniformly among the starts whose clip (`clip_len` frames, `frame_stride` apart) fits inside
//! the video, and the crop window (centre, or uniform when `random_crop`). Frames are decoded,
//! scaled to cover `size`, cropped, and written into the batch buffer `(B, T, H, W, 3)`.
use crate::error::{Error, ErrorKind, Location, Result};
use crate::frames;
use crate::plan::{mix, Rng};
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

#[derive(Debug, Clone)]
pub struct ClipConfig {
    pub clip_len: usize,
    pub frame_stride: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub random_crop: bool,
    pub seed: u64,
    /// Per-clip decode deadline.
    pub timeout: Duration,
}

impl ClipConfig {
    /// Frames a clip spans from its first to its last frame, inclusive.
    pub fn span(&self) -> usize {
        (self.clip_len - 1) * self.frame_stride + 1
    }
    pub fn clip_bytes(&self) -> usize {
        self.clip_len * self.out_h * self.out_w * 3
    }
}

fn is_frame(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()).as_deref(),
        Some("jpg" | "jpeg" | "png")
    )
}

/// Sort key: the last run of digits in the stem as a number, then the name.
fn frame_key(p: &Path) -> (u64, String) {
    let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    let digits: String = stem.chars().rev().skip_while(|c| !c.is_ascii_digit()).take_while(|c| c.is_ascii_digit()).collect();
    let n = digits.chars().rev().collect::<String>().parse::<u64>().unwrap_or(u64::MAX);
    (n, stem.to_string())
}

fn looks_like_video_file(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()).as_deref(),
        Some("mp4" | "mkv" | "webm" | "avi" | "mov" | "m4v" | "ts" | "mpg")
    )
}

/// Scan `root`: every sub-folder (sorted by name) with at least `min_frames` frames is a video;
/// with the `video` feature, so is every video file directly in `root`.
/// Returns the videos (folders first, then files) and those left out as too short.
pub fn scan(root: &Path, min_frames: usize) -> Result<(Vec<Video>, Vec<PathBuf>)> {
    let rd = std::fs::read_dir(root).map_err(|e| Error::io(root, &e))?;
    let entries: Vec<PathBuf> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    let mut dirs: Vec<PathBuf> = entries.iter().filter(|p| p.is_dir()).cloned().collect();
    dirs.sort();
    let mut files: Vec<PathBuf> = entries.iter().filter(|p| p.is_file() && looks_like_video_file(p)).cloned().collect();
    files.sort();
    let mut videos = Vec::new();
    let mut short = Vec::new();
    for dir in dirs {
        let mut fs: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| Error::io(&dir, &e))?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| is_frame(p))
            .collect();
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

/// First frame of video `vid`'s clip in `epoch`, and the rng for its crop.
pub fn clip_start(cfg: &ClipConfig, epoch: u64, vid: u64, n_frames: usize) -> (usize, Rng) {
    let mut rng = Rng::new(mix(cfg.seed, epoch, 0xC1_1900_0000 ^ vid));
    let choices = n_frames + 1 - cfg.span();
    (rng.below(choices as u64) as usize, rng)
}

/// Frame indices of the clip.
pub fn clip_frames(cfg: &ClipConfig, start: usize) -> Vec<usize> {
    (0..cfg.clip_len).map(|t| start + t * cfg.frame_stride).collect()
}

/// Decode one clip into `dst` (`clip_len * H * W * 3` bytes).
pub fn load_clip(video: &Video, cfg: &ClipConfig, epoch: u64, vid: u64, dst: &mut [u8]) -> Result<()> {
    let (start, mut rng) = clip_start(cfg, epoch, vid, video.len());
    let frame_bytes = cfg.out_h * cfg.out_w * 3;
    let deadline = Instant::now() + cfg.timeout;
    // Video files: swscale converts and scales to the covering size in one pass; only the crop is left.
    #[cfg(feature = "video")]
    let decoded: Option<Vec<frames::Rgb>> = match &video.file {
        Some(idx) => {
            let (rh, rw) = frames::cover_size(idx.height, idx.width, cfg.out_h, cfg.out_w);
            Some(crate::video_file::decode_frames(&video.dir, idx, &clip_frames(cfg, start), (rw, rh), deadline)?)
        }
        None => None,
    };
    // The crop window (and the resize plan) is chosen at the first frame and kept for the clip.
    let mut resizer: Option<(frames::Resizer, usize, usize)> = None;
    for (t, fi) in clip_frames(cfg, start).into_iter().enumerate() {
        if Instant::now() > deadline {
            return Err(Error::new(ErrorKind::Decode, &video.dir, Location::None, format!("clip decode exceeded its deadline ({:?})", cfg.timeout)));
        }
        #[cfg(feature = "video")]
        if let Some(imgs) = &decoded {
            let img = &imgs[t];
            let _ = fi;
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

    #[test]
    fn clips_are_consecutive_at_stride_and_inside_the_video() {
        let root = std::env::temp_dir().join(format!("vqfast-clips-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for (v, n) in [("a", 12usize), ("b", 30), ("c", 3)] {
            let d = root.join(v);
            std::fs::create_dir_all(&d).unwrap();
            for i in 0..n {
                // unpadded numbers: sorting must be numeric
                write_png(&d.join(format!("frame_{i}.png")), 8, 6, i as u8 * 5);
            }
        }
        let cfg = ClipConfig { clip_len: 4, frame_stride: 3, out_h: 6, out_w: 8, random_crop: false, seed: 3, timeout: Duration::from_secs(30) };
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
        let mut v = vec![PathBuf::from("x/f10.png"), PathBuf::from("x/f2.png"), PathBuf::from("x/f1.png")];
        v.sort_by_cached_key(|p| frame_key(p));
        assert_eq!(v[0], PathBuf::from("x/f1.png"));
        assert_eq!(v[2], PathBuf::from("x/f10.png"));
    }
}
