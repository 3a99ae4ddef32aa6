//! (cargo feature `video`) Frames of video files (MP4/MKV/WebM/AVI/MOV) through FFmpeg
//! (`ffmpeg-next` over Debian's libavcodec/libavformat/libswscale).
//!
//! * A demux-only scan builds the frame index once per file: every video packet's presentation
//!   timestamp (sorted = display order) and the keyframes'. The frame count comes from that
//!   index, never from the container's `nb_frames` or fps x duration.
//! * A clip seeks to the last keyframe at or before its first frame (`AVSEEK_FLAG_BACKWARD`, in
//!   stream time base), decodes forward with one decoder thread and keeps the frames whose
//!   timestamp is wanted; decoding stops after the last wanted frame, at EOF, or at the deadline.
//! * Frames are converted to RGB24 at source size by swscale; the shared resize/crop does the rest.
//!   Contexts are RAII (dropped after each clip): nothing is left running in the background.
use crate::error::{Error, ErrorKind, Location, Result};
use crate::frames::Rgb;
use ffmpeg_next as ff;
use std::path::Path;
use std::sync::Once;
use std::time::Instant;

/// File extensions treated as videos.
pub const EXTENSIONS: [&str; 8] = ["mp4", "mkv", "webm", "avi", "mov", "m4v", "ts", "mpg"];

/// Display-order timestamps of every frame, and of keyframes, in the stream's time base.
#[derive(Debug, Clone)]
pub struct FrameIndex {
    pub stream: usize,
    pub pts: Vec<i64>,
    pub keys: Vec<i64>,
    /// Coded frame size from the stream parameters.
    pub width: usize,
    pub height: usize,
}

fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = ff::init();
        ff::util::log::set_level(ff::util::log::Level::Fatal);
    });
}

fn decode_err(path: &Path, reason: impl Into<String>) -> Error {
    Error::new(ErrorKind::Decode, path, Location::None, reason)
}

pub fn is_video(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).map(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str())).unwrap_or(false)
}

/// Demux-only scan of `path`.
pub fn index(path: &Path) -> Result<FrameIndex> {
    init();
    let mut ictx = ff::format::input(&path).map_err(|e| decode_err(path, format!("cannot open video: {e}")))?;
    let best = ictx.streams().best(ff::media::Type::Video).ok_or_else(|| decode_err(path, "no video stream"))?;
    let stream = best.index();
    // SAFETY: reading two plain fields of the stream's codec parameters.
    let (width, height) = unsafe {
        let p = best.parameters();
        ((*p.as_ptr()).width.max(0) as usize, (*p.as_ptr()).height.max(0) as usize)
    };
    if width == 0 || height == 0 {
        return Err(decode_err(path, "video stream has no frame size"));
    }
    let (mut pts, mut keys) = (Vec::new(), Vec::new());
    for (s, packet) in ictx.packets() {
        if s.index() != stream {
            continue;
        }
        let Some(t) = packet.pts().or(packet.dts()) else { continue };
        pts.push(t);
        if packet.is_key() {
            keys.push(t);
        }
    }
    pts.sort_unstable();
    pts.dedup();
    keys.sort_unstable();
    if pts.is_empty() {
        return Err(decode_err(path, "video stream has no frames"));
    }
    if keys.is_empty() {
        keys.push(pts[0]);
    }
    Ok(FrameIndex { stream, pts, keys, width, height })
}

/// Decode frames `wanted` (ascending display indices) of `path` into RGB images of `size`
/// (w, h), converted and scaled (bilinear) by swscale in one pass.
pub fn decode_frames(path: &Path, index: &FrameIndex, wanted: &[usize], size: (usize, usize), deadline: Instant) -> Result<Vec<Rgb>> {
    init();
    let want_pts: Vec<i64> = wanted.iter().map(|&i| index.pts[i]).collect();
    let (first, last) = (want_pts[0], *want_pts.last().unwrap());
    let key = index.keys.iter().rev().find(|&&k| k <= first).copied().unwrap_or(index.pts[0]);
    let mut ictx = ff::format::input(&path).map_err(|e| decode_err(path, format!("cannot open video: {e}")))?;
    let params = ictx.stream(index.stream).ok_or_else(|| decode_err(path, "video stream vanished"))?.parameters();
    let mut ctx = ff::codec::context::Context::from_parameters(params).map_err(|e| decode_err(path, format!("codec: {e}")))?;
    // SAFETY: plain field writes on an owned, not yet opened codec context.
    unsafe {
        (*ctx.as_mut_ptr()).thread_count = 1;
    }
    let mut dec = ctx.decoder().video().map_err(|e| decode_err(path, format!("cannot open decoder: {e}")))?;
    // SAFETY: seek on an owned, open format context with a valid stream index.
    let r = unsafe { ff::ffi::av_seek_frame(ictx.as_mut_ptr(), index.stream as i32, key, ff::ffi::AVSEEK_FLAG_BACKWARD) };
    if r < 0 {
        return Err(decode_err(path, format!("seek to pts {key} failed ({})", ff::Error::from(r))));
    }
    let mut out: Vec<Option<Rgb>> = vec![None; wanted.len()];
    let mut got = 0usize;
    let mut scaler: Option<ff::software::scaling::Context> = None;
    let mut frame = ff::frame::Video::empty();
    let mut rgb = ff::frame::Video::empty();
    let mut take = |frame: &ff::frame::Video, got: &mut usize| -> Result<bool> {
        let Some(t) = frame.timestamp().or(frame.pts()) else { return Ok(false) };
        if let Ok(pos) = want_pts.binary_search(&t) {
            if out[pos].is_none() {
                let (ow, oh) = (size.0 as u32, size.1 as u32);
                if scaler.is_none() {
                    scaler = Some(
                        ff::software::scaling::Context::get(frame.format(), frame.width(), frame.height(), ff::format::Pixel::RGB24, ow, oh, ff::software::scaling::Flags::BILINEAR)
                            .map_err(|e| decode_err(path, format!("swscale: {e}")))?,
                    );
                }
                scaler.as_mut().unwrap().run(frame, &mut rgb).map_err(|e| decode_err(path, format!("swscale: {e}")))?;
                let (w, h) = (size.0, size.1);
                let stride = rgb.stride(0);
                let src = rgb.data(0);
                let mut data = Vec::with_capacity(w * h * 3);
                for y in 0..h {
                    data.extend_from_slice(&src[y * stride..y * stride + w * 3]);
                }
                out[pos] = Some(Rgb { w, h, data });
                *got += 1;
            }
        }
        Ok(t >= last)
    };
    let mut done = false;
    for (s, packet) in ictx.packets() {
        if Instant::now() > deadline {
            return Err(decode_err(path, "clip decode exceeded its deadline"));
        }
        if s.index() != index.stream {
            continue;
        }
        if dec.send_packet(&packet).is_err() {
            continue; // a damaged packet: the frames it carried will be reported missing
        }
        while dec.receive_frame(&mut frame).is_ok() {
            if take(&frame, &mut got)? && got == wanted.len() {
                done = true;
                break;
            }
        }
        if done {
            break;
        }
    }
    if !done {
        let _ = dec.send_eof();
        while dec.receive_frame(&mut frame).is_ok() {
            take(&frame, &mut got)?;
        }
    }
    if got < wanted.len() {
        let missing: Vec<usize> = wanted.iter().zip(&out).filter(|(_, o)| o.is_none()).map(|(i, _)| *i).take(8).collect();
        return Err(decode_err(path, format!("frames {missing:?} (of {}) could not be decoded", index.pts.len())));
    }
    Ok(out.into_iter().map(|o| o.unwrap()).collect())
}
