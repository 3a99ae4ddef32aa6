//! Zip central directory reader (incl. zip64) for `torch.save` archives.
//!
//! Only what a `.pt` file needs: the list of entries with the byte range of each entry's data,
//! computed from the *local* header (torch pads the local extra field with an `FB` record so
//! that data starts 64-byte aligned; the central directory's extra length differs).
//! Compressed (deflated) or encrypted entries are reported, and refused by [`Entry::stored_range`].
//! Offsets and sizes from the file are combined with checked/saturating arithmetic and read with
//! bounds-checked accessors (a field past the end reads as 0 and fails the next check): the lint
//! below keeps it that way.
#![deny(clippy::arithmetic_side_effects)]
use crate::error::{Error, Result};
use std::path::Path;

const EOCD_SIG: u32 = 0x0605_4b50;
const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
const ZIP64_EOCD_SIG: u32 = 0x0606_4b50;
const CDH_SIG: u32 = 0x0201_4b50;
const LFH_SIG: u32 = 0x0403_4b50;
/// Hard cap on entries; a torch file has a handful plus one per storage.
pub const MAX_ENTRIES: u64 = 10_000_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    /// 0 = stored, 8 = deflate, ...
    pub method: u16,
    pub flags: u16,
    pub compressed_size: u64,
    pub size: u64,
    /// Offset of the local file header.
    pub header_offset: u64,
    /// Offset of the first data byte (from the local header).
    pub data_offset: u64,
}

impl Entry {
    /// The byte range of a stored, unencrypted entry; an error naming the entry otherwise.
    pub fn stored_range(&self, path: &Path) -> Result<std::ops::Range<usize>> {
        if self.flags & 1 != 0 {
            return Err(Error::unsupported(
                path,
                crate::error::Location::Offset { entry: Some(self.name.clone()), offset: 0 },
                "entry is encrypted; only stored (uncompressed) entries can be read",
            ));
        }
        if self.method != 0 {
            let m = if self.method == 8 { "deflated".to_string() } else { format!("compression method {}", self.method) };
            return Err(Error::unsupported(
                path,
                crate::error::Location::Offset { entry: Some(self.name.clone()), offset: 0 },
                format!("entry is {m}; only stored (uncompressed) entries as written by torch.save can be memory-mapped (was the file re-zipped?)"),
            ));
        }
        // read_directory checked data_offset + compressed_size <= the central directory offset
        // (and size == compressed_size for stored entries)
        Ok(self.data_offset as usize..self.data_offset.saturating_add(self.size) as usize)
    }
}

fn field<const N: usize>(b: &[u8], o: usize) -> [u8; N] {
    b.get(o..o.saturating_add(N)).and_then(|s| s.try_into().ok()).unwrap_or([0u8; N])
}
fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes(field(b, o))
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(field(b, o))
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(field(b, o))
}
fn add(a: usize, b: usize) -> usize {
    a.saturating_add(b)
}
fn sub(a: usize, b: usize) -> usize {
    a.saturating_sub(b)
}

/// True when `bytes` start like a zip archive (local header signature).
pub fn looks_like_zip(bytes: &[u8]) -> bool {
    bytes.len() >= 4 && u32_at(bytes, 0) == LFH_SIG
}

/// Parse the central directory of `bytes` (the whole file).
pub fn read_directory(path: &Path, bytes: &[u8]) -> Result<Vec<Entry>> {
    let len = bytes.len();
    if len < 22 {
        return Err(Error::corrupt_at(path, 0, format!("file is {len} bytes, too short for a zip archive (truncated?)")));
    }
    // The end-of-central-directory record sits in the last 22 + 65535 bytes.
    let lo = len.saturating_sub(22 + 65_535);
    let mut eocd = None;
    let mut i = sub(len, 22);
    loop {
        if u32_at(bytes, i) == EOCD_SIG && add(add(i, 22), u16_at(bytes, add(i, 20)) as usize) == len {
            eocd = Some(i);
            break;
        }
        if i == lo {
            break;
        }
        i = sub(i, 1);
    }
    let eocd = eocd.ok_or_else(|| {
        Error::corrupt_at(path, len as u64, "no end-of-central-directory record: not a zip archive, or truncated")
    })?;
    let mut n_entries = u16_at(bytes, add(eocd, 10)) as u64;
    let mut cd_size = u32_at(bytes, add(eocd, 12)) as u64;
    let mut cd_offset = u32_at(bytes, add(eocd, 16)) as u64;
    if u16_at(bytes, add(eocd, 4)) != 0 || u16_at(bytes, add(eocd, 6)) != 0 {
        return Err(Error::unsupported(path, crate::error::Location::Offset { entry: None, offset: eocd as u64 }, "multi-disk zip archives are not supported"));
    }
    // zip64: a locator 20 bytes before the EOCD points at the zip64 EOCD record.
    if eocd >= 20 && u32_at(bytes, sub(eocd, 20)) == ZIP64_LOCATOR_SIG {
        let loc = sub(eocd, 20);
        let z64 = u64_at(bytes, add(loc, 8));
        if z64.checked_add(56).map_or(true, |e| e > loc as u64) {
            return Err(Error::corrupt_at(path, loc as u64, format!("zip64 locator points at {z64}, outside the file")));
        }
        let z = z64 as usize;
        if u32_at(bytes, z) != ZIP64_EOCD_SIG {
            return Err(Error::corrupt_at(path, z64, "bad zip64 end-of-central-directory signature"));
        }
        n_entries = u64_at(bytes, add(z, 32));
        cd_size = u64_at(bytes, add(z, 40));
        cd_offset = u64_at(bytes, add(z, 48));
    }
    if n_entries > MAX_ENTRIES {
        return Err(Error::corrupt_at(path, eocd as u64, format!("{n_entries} entries exceeds the limit {MAX_ENTRIES}")));
    }
    let cd_end = cd_offset.checked_add(cd_size).unwrap_or(u64::MAX);
    if cd_end > eocd as u64 {
        return Err(Error::corrupt_at(
            path,
            cd_offset,
            format!("central directory [{cd_offset}, {cd_end}) runs past its end record at {eocd} (truncated?)"),
        ));
    }
    let mut entries = Vec::with_capacity(n_entries.min(4096) as usize);
    let mut p = cd_offset as usize;
    for _ in 0..n_entries {
        if add(p, 46) > cd_end as usize || u32_at(bytes, p) != CDH_SIG {
            return Err(Error::corrupt_at(path, p as u64, "bad central directory header"));
        }
        let flags = u16_at(bytes, add(p, 8));
        let method = u16_at(bytes, add(p, 10));
        let mut csize = u32_at(bytes, add(p, 20)) as u64;
        let mut usize_ = u32_at(bytes, add(p, 24)) as u64;
        let name_len = u16_at(bytes, add(p, 28)) as usize;
        let extra_len = u16_at(bytes, add(p, 30)) as usize;
        let comment_len = u16_at(bytes, add(p, 32)) as usize;
        let mut hdr = u32_at(bytes, add(p, 42)) as u64;
        let name_start = add(p, 46);
        let extra_start = add(name_start, name_len);
        let next = add(add(extra_start, extra_len), comment_len);
        if next > cd_end as usize {
            return Err(Error::corrupt_at(path, p as u64, "central directory header runs past the directory"));
        }
        let name = String::from_utf8_lossy(&bytes[name_start..extra_start]).into_owned();
        // zip64 extended information extra field (id 1): only the fields that overflowed, in order.
        let mut e = extra_start;
        let extra_end = add(extra_start, extra_len);
        while add(e, 4) <= extra_end {
            let id = u16_at(bytes, e);
            let sz = u16_at(bytes, add(e, 2)) as usize;
            let body = add(e, 4);
            if add(body, sz) > extra_end {
                return Err(Error::corrupt_at(path, e as u64, format!("extra field of entry '{name}' runs past its header")));
            }
            if id == 1 {
                let mut q = body;
                let mut take = |v: &mut u64, full: u64| -> bool {
                    if *v == full {
                        if add(q, 8) > add(body, sz) {
                            return false;
                        }
                        *v = u64_at(bytes, q);
                        q = add(q, 8);
                    }
                    true
                };
                let ok = take(&mut usize_, 0xFFFF_FFFF) && take(&mut csize, 0xFFFF_FFFF) && take(&mut hdr, 0xFFFF_FFFF);
                if !ok {
                    return Err(Error::corrupt_at(path, e as u64, format!("short zip64 extra field in entry '{name}'")));
                }
            }
            e = add(body, sz);
        }
        // Local header gives the real data offset.
        if hdr.checked_add(30).map_or(true, |x| x > cd_offset) {
            return Err(Error::corrupt_at(path, hdr, format!("local header of entry '{name}' lies outside the data area")));
        }
        let h = hdr as usize;
        if u32_at(bytes, h) != LFH_SIG {
            return Err(Error::corrupt_at(path, hdr, format!("bad local header signature for entry '{name}'")));
        }
        // hdr + 30 <= cd_offset (checked above); two u16 lengths cannot overflow u64 after that
        let data_offset = hdr.saturating_add(30).saturating_add(u16_at(bytes, add(h, 26)) as u64).saturating_add(u16_at(bytes, add(h, 28)) as u64);
        let data_end = data_offset.checked_add(csize).unwrap_or(u64::MAX);
        if data_end > cd_offset {
            return Err(Error::corrupt_at(
                path,
                data_offset,
                format!("entry '{name}' claims {csize} bytes at offset {data_offset} but the data area ends at {cd_offset} (truncated?)"),
            ));
        }
        if method == 0 && csize != usize_ {
            return Err(Error::corrupt_at(path, p as u64, format!("stored entry '{name}' has compressed size {csize} != size {usize_}")));
        }
        entries.push(Entry { name, method, flags, compressed_size: csize, size: usize_, header_offset: hdr, data_offset });
        p = next;
    }
    Ok(entries)
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
pub(crate) mod testzip {
    //! A tiny stored-zip writer for unit tests (optionally all-zip64, optionally padded like torch).
    pub fn write(entries: &[(&str, &[u8])], zip64: bool, align: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut cd = Vec::new();
        for (name, data) in entries {
            let off = out.len() as u64;
            let mut extra = Vec::new();
            if zip64 {
                extra.extend_from_slice(&1u16.to_le_bytes());
                extra.extend_from_slice(&16u16.to_le_bytes());
                extra.extend_from_slice(&(data.len() as u64).to_le_bytes());
                extra.extend_from_slice(&(data.len() as u64).to_le_bytes());
            }
            if align > 0 {
                let start = off as usize + 30 + name.len() + extra.len() + 4;
                let pad = (align - start % align) % align;
                extra.extend_from_slice(b"FB");
                extra.extend_from_slice(&(pad as u16).to_le_bytes());
                extra.extend(std::iter::repeat(b'Z').take(pad));
            }
            let sz32: u32 = if zip64 { 0xFFFF_FFFF } else { data.len() as u32 };
            out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
            out.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            out.extend_from_slice(&sz32.to_le_bytes());
            out.extend_from_slice(&sz32.to_le_bytes());
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(&(extra.len() as u16).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&extra);
            out.extend_from_slice(data);
            let mut cextra = Vec::new();
            if zip64 {
                cextra.extend_from_slice(&1u16.to_le_bytes());
                cextra.extend_from_slice(&24u16.to_le_bytes());
                cextra.extend_from_slice(&(data.len() as u64).to_le_bytes());
                cextra.extend_from_slice(&(data.len() as u64).to_le_bytes());
                cextra.extend_from_slice(&off.to_le_bytes());
            }
            cd.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
            cd.extend_from_slice(&[20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            cd.extend_from_slice(&sz32.to_le_bytes());
            cd.extend_from_slice(&sz32.to_le_bytes());
            cd.extend_from_slice(&(name.len() as u16).to_le_bytes());
            cd.extend_from_slice(&(cextra.len() as u16).to_le_bytes());
            cd.extend_from_slice(&[0u8; 10]);
            cd.extend_from_slice(&(if zip64 { 0xFFFF_FFFFu32 } else { off as u32 }).to_le_bytes());
            cd.extend_from_slice(name.as_bytes());
            cd.extend_from_slice(&cextra);
        }
        let cd_off = out.len() as u64;
        out.extend_from_slice(&cd);
        let n = entries.len() as u64;
        if zip64 {
            let z = out.len() as u64;
            out.extend_from_slice(&0x0606_4b50u32.to_le_bytes());
            out.extend_from_slice(&44u64.to_le_bytes());
            out.extend_from_slice(&[45, 0, 45, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            out.extend_from_slice(&n.to_le_bytes());
            out.extend_from_slice(&n.to_le_bytes());
            out.extend_from_slice(&(cd.len() as u64).to_le_bytes());
            out.extend_from_slice(&cd_off.to_le_bytes());
            out.extend_from_slice(&0x0706_4b50u32.to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
            out.extend_from_slice(&z.to_le_bytes());
            out.extend_from_slice(&1u32.to_le_bytes());
        }
        out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]);
        let n16: u16 = if zip64 { 0xFFFF } else { n as u16 };
        out.extend_from_slice(&n16.to_le_bytes());
        out.extend_from_slice(&n16.to_le_bytes());
        out.extend_from_slice(&(if zip64 { 0xFFFF_FFFFu32 } else { cd.len() as u32 }).to_le_bytes());
        out.extend_from_slice(&(if zip64 { 0xFFFF_FFFFu32 } else { cd_off as u32 }).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use std::path::Path;

    fn check(zip64: bool) {
        let a: Vec<u8> = (0..100u8).collect();
        let bytes = testzip::write(&[("arc/data.pkl", b"hello"), ("arc/data/0", &a)], zip64, 64);
        let es = read_directory(Path::new("t.pt"), &bytes).unwrap();
        assert_eq!(es.len(), 2);
        assert_eq!(es[0].name, "arc/data.pkl");
        let r = es[1].stored_range(Path::new("t.pt")).unwrap();
        assert_eq!(r.start % 64, 0);
        assert_eq!(&bytes[r], &a[..]);
        let r0 = es[0].stored_range(Path::new("t.pt")).unwrap();
        assert_eq!(&bytes[r0], b"hello");
    }

    #[test]
    fn reads_plain_and_zip64() {
        check(false);
        check(true);
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let a = vec![7u8; 300];
        for zip64 in [false, true] {
            let bytes = testzip::write(&[("arc/data.pkl", b"abc"), ("arc/data/0", &a)], zip64, 64);
            for cut in 0..bytes.len() {
                assert!(read_directory(Path::new("t.pt"), &bytes[..cut]).is_err(), "cut {cut}");
            }
        }
    }

    #[test]
    fn byte_flips_never_panic() {
        let a = vec![7u8; 100];
        let bytes = testzip::write(&[("arc/data.pkl", b"abc"), ("arc/data/0", &a)], true, 64);
        for i in 0..bytes.len() {
            for v in [0u8, 0xFF, bytes[i] ^ 0x55] {
                let mut b = bytes.clone();
                b[i] = v;
                let _ = read_directory(Path::new("t.pt"), &b);
            }
        }
    }

    #[test]
    fn deflated_entry_is_refused() {
        let mut bytes = testzip::write(&[("arc/data.pkl", b"abc")], false, 0);
        // method field of local header (offset 8) and central header.
        bytes[8] = 8;
        let cd = bytes.windows(4).position(|w| w == 0x0201_4b50u32.to_le_bytes()).unwrap();
        bytes[cd + 10] = 8;
        let es = read_directory(Path::new("t.pt"), &bytes).unwrap();
        let err = es[0].stored_range(Path::new("t.pt")).unwrap_err();
        assert!(err.to_string().contains("deflated"), "{err}");
    }
}
