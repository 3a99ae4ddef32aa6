//! `.npy` and uncompressed `.npz` reader: header parsing only; the data is read with `pread`
//! or memory-mapped by the caller. Big-endian, Fortran-order, object and compressed arrays are refused.
//! Every size and offset from the header is computed with checked arithmetic (the lint below).
#![deny(clippy::arithmetic_side_effects)]
use crate::dtype::DType;
use crate::error::{Error, Location, Result};
use crate::ptfile::ArrayLoc;
use crate::zipdir;
use std::path::Path;

const MAGIC: &[u8] = b"\x93NUMPY";

/// Parse an `.npy` header at the start of `bytes`; `base` is added to the returned data offset.
pub fn parse_npy(path: &Path, bytes: &[u8], base: u64) -> Result<ArrayLoc> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(Error::corrupt_at(path, base, "not an .npy array (bad magic)"));
    }
    let major = bytes[6];
    let (hlen, hstart): (usize, usize) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(Error::corrupt_at(path, base, "truncated .npy header"));
            }
            (u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize, 12)
        }
        v => return Err(Error::unsupported(path, Location::Offset { entry: None, offset: base.saturating_add(6) }, format!(".npy format version {v} is not supported"))),
    };
    let Some(hend) = hstart.checked_add(hlen).filter(|&e| e <= bytes.len()) else {
        return Err(Error::corrupt_at(path, base, format!(".npy header of {hlen} bytes runs past the file (truncated?)")));
    };
    let hpos = base.saturating_add(hstart as u64);
    let header = std::str::from_utf8(&bytes[hstart..hend]).map_err(|_| Error::corrupt_at(path, hpos, ".npy header is not text"))?;
    let descr = field(header, "descr").and_then(|v| v.strip_prefix('\'').and_then(|v| v.split('\'').next()));
    let Some(descr) = descr else { return Err(Error::corrupt_at(path, hpos, "npy header has no 'descr'")) };
    let dtype = DType::from_numpy_descr(descr).ok_or_else(|| {
        Error::unsupported(
            path,
            Location::Offset { entry: None, offset: hpos },
            format!("numpy dtype '{descr}' is not supported (little-endian bool/int/uint/float/complex only; object arrays would need pickle)"),
        )
    })?;
    if field(header, "fortran_order").map_or(false, |v| v.starts_with("True")) {
        return Err(Error::unsupported(path, Location::Offset { entry: None, offset: hpos }, "Fortran-order arrays are not supported; save with np.ascontiguousarray"));
    }
    let shape_txt = field(header, "shape").and_then(|v| v.strip_prefix('(')).and_then(|v| v.split(')').next());
    let Some(shape_txt) = shape_txt else { return Err(Error::corrupt_at(path, hpos, "npy header has no 'shape'")) };
    let mut shape = Vec::new();
    for part in shape_txt.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        shape.push(part.parse::<u64>().map_err(|_| Error::corrupt_at(path, hpos, format!("bad shape entry {part:?}")))?);
    }
    if shape.len() > 64 {
        return Err(Error::corrupt_at(path, hpos, format!("npy shape has {} dims (limit 64)", shape.len())));
    }
    let data_offset = hend as u64;
    let nbytes = shape.iter().try_fold(dtype.itemsize() as u64, |a, &d| a.checked_mul(d));
    // Checked: a shape whose byte size plus the header wraps u64 must not pass (fuzz-pt-2 A3).
    let end = nbytes.and_then(|n| n.checked_add(data_offset));
    if end.map_or(true, |e| e > bytes.len() as u64) {
        return Err(Error::corrupt_at(path, base.saturating_add(data_offset), format!("array data ({shape:?} of {}) runs past the end of the file (truncated?)", dtype.torch_name())));
    }
    let data_offset = base.checked_add(data_offset).ok_or_else(|| Error::corrupt_at(path, base, "npy data offset overflows"))?;
    Ok(ArrayLoc { dtype, shape, data_offset })
}

fn field<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    let pat = format!("'{name}':");
    let i = header.find(&pat)?;
    Some(header[i.checked_add(pat.len())?..].trim_start())
}

/// Locate member `<key>.npy` of an `.npz` archive (must be stored, i.e. `np.savez`, not `savez_compressed`).
pub fn npz_member(path: &Path, bytes: &[u8], key: &str) -> Result<ArrayLoc> {
    let entries = zipdir::read_directory(path, bytes)?;
    let want = format!("{key}.npy");
    let Some(e) = entries.iter().find(|e| e.name == want) else {
        let names: Vec<_> = entries.iter().map(|e| e.name.trim_end_matches(".npy").to_string()).collect();
        return Err(Error::schema(path, key, format!("no array under this key; arrays in the file: {names:?}")));
    };
    let r = e.stored_range(path)?;
    parse_npy(path, &bytes[r.clone()], r.start as u64)
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
        let mut h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + h.len() + 1) % 64 != 0 {
            h.push(' ');
        }
        h.push('\n');
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(h.len() as u16).to_le_bytes());
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn npy_header() {
        let b = npy("<f4", "(2, 3)", &[0u8; 24]);
        let loc = parse_npy(Path::new("a.npy"), &b, 0).unwrap();
        assert_eq!(loc.shape, vec![2, 3]);
        assert_eq!(loc.dtype, DType::F32);
        assert_eq!(loc.data_offset % 64, 0);
        assert_eq!(loc.row_bytes(), Some(12));
        let b1 = npy("<i8", "(5,)", &[0u8; 40]);
        assert_eq!(parse_npy(Path::new("a.npy"), &b1, 0).unwrap().shape, vec![5]);
        assert!(parse_npy(Path::new("a.npy"), &b[..80], 0).is_err());
        assert!(parse_npy(Path::new("a.npy"), &npy(">f4", "(2, 3)", &[0u8; 24]), 0).is_err());
        assert!(parse_npy(Path::new("a.npy"), &npy("|O", "(2,)", &[0u8; 16]), 0).is_err());
    }

    #[test]
    fn byte_size_that_wraps_is_refused() {
        // fuzz-pt-2 A3: 64 * 288230376151711742 + 128 == 2^64 wrapped an unchecked add.
        let b = npy("|u1", "(64, 288230376151711742)", &[0u8; 48]);
        let e = parse_npy(Path::new("wrap.npy"), &b, 0).unwrap_err();
        assert!(e.to_string().contains("wrap.npy"), "{e}");
        for shape in ["(18446744073709551615,)", "(2, 9223372036854775807)", "(18446744073709551616,)"] {
            assert!(parse_npy(Path::new("w.npy"), &npy("<f4", shape, &[0u8; 16]), 0).is_err(), "{shape}");
        }
        // Empty arrays with huge other dims are fine to parse (0 bytes); the row size is None.
        let loc = parse_npy(Path::new("z.npy"), &npy("<f4", "(0, 4294967296, 4294967296)", &[]), 0).unwrap();
        assert_eq!(loc.row_bytes(), None);
        // A 0-d array parses (numpy writes them); the shard loader refuses it as a shard.
        assert!(parse_npy(Path::new("s.npy"), &npy("<f4", "()", &[0u8; 4]), 0).unwrap().shape.is_empty());
    }

    #[test]
    fn npz_members() {
        let a = npy("<f4", "(2, 3)", &[1u8; 24]);
        let l = npy("<i8", "(2,)", &[2u8; 16]);
        let z = zipdir::testzip::write(&[("latents.npy", &a), ("labels.npy", &l)], false, 0);
        let loc = npz_member(Path::new("a.npz"), &z, "labels").unwrap();
        assert_eq!(loc.shape, vec![2]);
        assert_eq!(z[loc.data_offset as usize], 2);
        assert!(npz_member(Path::new("a.npz"), &z, "nope").unwrap_err().to_string().contains("latents"));
    }
}
