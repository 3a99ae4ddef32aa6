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
    let h = parse_header(header).map_err(|reason| Error::corrupt_at(path, hpos, format!("npy header {reason}: {:?}", header.trim_end())))?;
    let descr = h.descr.as_str();
    let dtype = DType::from_numpy_descr(descr).ok_or_else(|| {
        Error::unsupported(
            path,
            Location::Offset { entry: None, offset: hpos },
            format!("numpy dtype '{descr}' is not supported (little-endian bool/int/uint/float/complex only; object arrays would need pickle)"),
        )
    })?;
    if h.fortran_order {
        return Err(Error::unsupported(path, Location::Offset { entry: None, offset: hpos }, "Fortran-order arrays are not supported; save with np.ascontiguousarray"));
    }
    let shape = h.shape;
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

struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<u64>,
}

/// The header dict, read as strictly as numpy's `ast.literal_eval` + key checks
/// (`numpy.lib.format._read_array_header`): exactly the keys `descr` (a str), `fortran_order`
/// (True/False) and `shape` (a tuple of non-negative ints), any order, single or double quotes,
/// an optional trailing comma; only whitespace after the closing brace. A header numpy refuses
/// (a misspelled key, `fortran_order: 1`, `shape: (3,,4)`, text after the dict) is corrupt here
/// too, never read with a guessed meaning.
fn parse_header(h: &str) -> std::result::Result<Header, String> {
    let mut c = Cursor { s: h.as_bytes(), i: 0 };
    c.expect(b'{')?;
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    loop {
        c.ws();
        if c.eat(b'}') {
            break;
        }
        let key = c.string()?;
        c.ws();
        c.expect(b':')?;
        c.ws();
        match key.as_str() {
            "descr" if descr.is_none() => descr = Some(c.string().map_err(|e| format!("'descr' {e} (structured dtypes are not supported)"))?),
            "fortran_order" if fortran.is_none() => fortran = Some(c.boolean()?),
            "shape" if shape.is_none() => shape = Some(c.tuple()?),
            k => return Err(format!("has an unexpected or repeated key {k:?}")),
        }
        c.ws();
        if c.eat(b',') {
            continue;
        }
        c.ws();
        c.expect(b'}')?;
        break;
    }
    if c.s[c.i..].iter().any(|b| !b.is_ascii_whitespace()) {
        return Err("has text after the dict".into());
    }
    match (descr, fortran, shape) {
        (Some(descr), Some(fortran_order), Some(shape)) => Ok(Header { descr, fortran_order, shape }),
        _ => Err("lacks one of the keys 'descr', 'fortran_order', 'shape'".into()),
    }
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn bump(&mut self) {
        self.i = self.i.saturating_add(1).min(self.s.len());
    }
    fn ws(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.bump();
        }
    }
    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.bump();
            true
        } else {
            false
        }
    }
    fn expect(&mut self, b: u8) -> std::result::Result<(), String> {
        if self.eat(b) {
            Ok(())
        } else {
            Err(format!("expects {:?} at byte {}", b as char, self.i))
        }
    }
    fn string(&mut self) -> std::result::Result<String, String> {
        let q = match self.peek() {
            Some(q @ (b'\'' | b'"')) => q,
            _ => return Err(format!("expects a quoted string at byte {}", self.i)),
        };
        self.bump();
        let start = self.i;
        while let Some(b) = self.peek() {
            if b == q {
                let v = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
                self.bump();
                return Ok(v);
            }
            if b == b'\\' {
                return Err("has an escape sequence in a string".into());
            }
            self.bump();
        }
        Err("has an unterminated string".into())
    }
    fn boolean(&mut self) -> std::result::Result<bool, String> {
        for (word, v) in [(&b"True"[..], true), (&b"False"[..], false)] {
            if self.s[self.i..].starts_with(word) {
                let after = self.s.get(self.i.saturating_add(word.len())).copied();
                if !after.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_') {
                    self.i = self.i.saturating_add(word.len());
                    return Ok(v);
                }
            }
        }
        Err("'fortran_order' must be True or False".into())
    }
    fn tuple(&mut self) -> std::result::Result<Vec<u64>, String> {
        self.expect(b'(').map_err(|_| "'shape' must be a tuple".to_string())?;
        let mut dims = Vec::new();
        loop {
            self.ws();
            if self.eat(b')') {
                break;
            }
            let start = self.i;
            while self.peek().is_some_and(|b| b.is_ascii_digit()) {
                self.bump();
            }
            let txt = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
            let d = txt.parse::<u64>().map_err(|_| format!("has a bad shape entry at byte {start}"))?;
            dims.push(d);
            if dims.len() > 64 {
                return Err("has a shape of more than 64 dims".into());
            }
            self.ws();
            if self.eat(b',') {
                continue;
            }
            self.ws();
            self.expect(b')')?;
            if dims.len() == 1 {
                // (3) is an int in Python, not a tuple: numpy needs the comma for one dim.
                return Err("'shape' (n) is an int, not a tuple; one dim is written (n,)".into());
            }
            break;
        }
        Ok(dims)
    }
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

    fn raw(header: &str, data: &[u8]) -> Vec<u8> {
        let mut h = header.to_string();
        h.push('\n');
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(h.len() as u16).to_le_bytes());
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn header_is_read_as_strictly_as_numpy() {
        // fuzz-pt-2 D: a substring search read `'fortran_ordEr': True` as C order.
        let ok = [
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
            "{\"shape\": (2, 3), \"descr\": \"<f4\", \"fortran_order\": False}",
            "{ 'descr' : '<f4' , 'fortran_order' : False , 'shape' : ( 2 , 3 , ) }   ",
        ];
        for h in ok {
            assert_eq!(parse_npy(Path::new("a.npy"), &raw(h, &[0u8; 24]), 0).unwrap().shape, vec![2, 3], "{h}");
        }
        let bad = [
            "{'descr': '<f4', 'fortran_ordEr': True, 'shape': (2, 3), }",
            "{'descr': '<f4', 'shape': (2, 3), }",
            "{'descr': '<f4', 'fortran_order': 1, 'shape': (2, 3), }",
            "{'descr': '<f4', 'fortran_order': Fals, 'shape': (2, 3), }",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (3,,4), }",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (6), }",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (-6,), }",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (18446744073709551616,), }",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (6,), } garbage",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (6,), 'shape': (6,)}",
            "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (6,), }",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (6,), 'extra': 1}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (6,)",
        ];
        for h in bad {
            let e = parse_npy(Path::new("b.npy"), &raw(h, &[0u8; 24]), 0).unwrap_err();
            assert_eq!(e.kind, crate::error::ErrorKind::Corrupt, "{h}: {e}");
            assert!(e.to_string().contains("b.npy") && e.to_string().contains("npy header"), "{e}");
        }
        let e = parse_npy(Path::new("f.npy"), &raw("{'descr': '<f4', 'fortran_order': True, 'shape': (6,), }", &[0u8; 24]), 0).unwrap_err();
        assert_eq!(e.kind, crate::error::ErrorKind::Unsupported);
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
