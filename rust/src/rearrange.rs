//! `(B, T, H, W, C)` uint8 → `((B*T), C, H, W)` float32 with `(x / 255 - mean[c]) / std[c]`.
//!
//! The per-channel value table is computed with the same f32 operations torch uses for
//! `((x.float() / 255) - mean) / std`, so results are bit-identical to that expression.
//! Frames are split over `threads` scoped threads.

pub fn lut(mean: &[f32], std: &[f32]) -> Vec<[f32; 256]> {
    mean.iter()
        .zip(std)
        .map(|(&m, &s)| {
            let mut t = [0f32; 256];
            for (v, slot) in t.iter_mut().enumerate() {
                *slot = ((v as f32) / 255.0f32 - m) / s;
            }
            t
        })
        .collect()
}

/// `src`: `n_frames * h * w * c` bytes (HWC per frame); `dst`: `n_frames * c * h * w` floats.
pub fn hwc_to_chw_normalise(src: &[u8], dst: &mut [f32], n_frames: usize, hw: usize, c: usize, table: &[[f32; 256]], threads: usize) {
    assert_eq!(src.len(), n_frames * hw * c);
    assert_eq!(dst.len(), n_frames * hw * c);
    assert_eq!(table.len(), c);
    let frame = hw * c;
    if n_frames == 0 || frame == 0 {
        return;
    }
    let threads = threads.max(1).min(n_frames);
    let per = n_frames.div_ceil(threads);
    std::thread::scope(|s| {
        for (src_chunk, dst_chunk) in src.chunks(per * frame).zip(dst.chunks_mut(per * frame)) {
            s.spawn(move || {
                for (sf, df) in src_chunk.chunks_exact(frame).zip(dst_chunk.chunks_exact_mut(frame)) {
                    one_frame(sf, df, hw, c, table);
                }
            });
        }
    });
}

fn one_frame(src: &[u8], dst: &mut [f32], hw: usize, c: usize, table: &[[f32; 256]]) {
    if c == 3 {
        let (p0, rest) = dst.split_at_mut(hw);
        let (p1, p2) = rest.split_at_mut(hw);
        let (t0, t1, t2) = (&table[0], &table[1], &table[2]);
        for (i, px) in src.chunks_exact(3).enumerate() {
            p0[i] = t0[px[0] as usize];
            p1[i] = t1[px[1] as usize];
            p2[i] = t2[px[2] as usize];
        }
    } else {
        for ch in 0..c {
            let t = &table[ch];
            let plane = &mut dst[ch * hw..(ch + 1) * hw];
            for (i, d) in plane.iter_mut().enumerate() {
                *d = t[src[i * c + ch] as usize];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn matches_the_naive_formula() {
        let (n, h, w, c) = (3, 4, 5, 3);
        let src: Vec<u8> = (0..n * h * w * c).map(|i| (i * 37 % 256) as u8).collect();
        let mean = [0.5f32, 0.4, 0.3];
        let std = [0.2f32, 0.25, 0.5];
        let mut dst = vec![0f32; src.len()];
        hwc_to_chw_normalise(&src, &mut dst, n, h * w, c, &lut(&mean, &std), 2);
        for f in 0..n {
            for ch in 0..c {
                for y in 0..h {
                    for x in 0..w {
                        let v = src[((f * h + y) * w + x) * c + ch] as f32;
                        let want = (v / 255.0 - mean[ch]) / std[ch];
                        assert_eq!(dst[((f * c + ch) * h + y) * w + x], want);
                    }
                }
            }
        }
        // single channel path
        let mut d1 = vec![0f32; 4];
        hwc_to_chw_normalise(&[0, 51, 102, 255], &mut d1, 1, 4, 1, &lut(&[0.0], &[1.0]), 1);
        assert_eq!(d1, vec![0.0, 0.2, 0.4, 1.0]);
    }
}
