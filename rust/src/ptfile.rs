//! `.pt` reader for the zip format `torch.save` writes (the legacy format is refused clearly).
//!
//! Layout: `<prefix>/data.pkl` (the pickle), `<prefix>/data/<key>` (one stored entry per storage,
//! 64-byte aligned), `<prefix>/byteorder` (`little`), `<prefix>/version`, ... where the prefix is
//! the stem of the file name (or `archive` for file-like objects). Every tensor is validated
//! against its storage entry here, so the glue can build views without further checks.
//! Sizes and offsets from the file use checked arithmetic (the lint below).
#![deny(clippy::arithmetic_side_effects)]
use crate::dtype::DType;
use crate::error::{Error, ErrorKind, Location, Result};
use crate::limits;
use crate::pickle::{self, Obj, TensorSpec};
use crate::zipdir;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Parsed structure of a `.pt` file: the object tree and where each storage's bytes are.
#[derive(Debug)]
pub struct PtIndex {
    pub prefix: String,
    pub root: Obj,
    /// storage key → byte range in the file.
    pub storages: HashMap<String, Range<usize>>,
}

/// A memory-mapped `.pt` file (private copy-on-write mapping, like `torch.load(mmap=True)`).
pub struct PtFile {
    pub path: PathBuf,
    pub map: memmap2::MmapMut,
    pub index: PtIndex,
}

/// The legacy (non-zip) `torch.save` magic number, pickled as a LONG1.
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

pub fn map_file(path: &Path) -> Result<memmap2::MmapMut> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, &e))?;
    let len = file.metadata().map_err(|e| Error::io(path, &e))?.len();
    if len < 22 {
        return Err(Error::corrupt_at(path, 0, format!("file is {len} bytes, too short for a torch.save archive (truncated?)")));
    }
    // SAFETY: a private (MAP_PRIVATE) mapping: writes stay in this process; concurrent truncation of
    // the file by another process is the usual mmap caveat (SIGBUS), as with torch.load(mmap=True).
    unsafe { memmap2::MmapOptions::new().map_copy(&file) }.map_err(|e| Error::io(path, &e))
}

impl PtFile {
    pub fn open(path: &Path) -> Result<PtFile> {
        let map = map_file(path)?;
        let index = parse(path, &map)?;
        Ok(PtFile { path: path.to_path_buf(), map, index })
    }
}

/// True if `bytes` start like a legacy (pre-1.6 / `_use_new_zipfile_serialization=False`) file.
/// Protocol 4+ (`pickle_protocol=4`) puts a FRAME (0x95 + u64 length) before the LONG1.
pub fn is_legacy(bytes: &[u8]) -> bool {
    let rest = match bytes {
        [0x80, _, 0x95, _, _, _, _, _, _, _, _, rest @ ..] => rest,
        [0x80, _, rest @ ..] => rest,
        _ => return false,
    };
    matches!(rest, [0x8a, 10, magic @ ..] if magic.get(..10) == Some(&LEGACY_MAGIC[..]))
}

pub fn parse(path: &Path, bytes: &[u8]) -> Result<PtIndex> {
    if !zipdir::looks_like_zip(bytes) {
        if is_legacy(bytes) {
            return parse_legacy(path, bytes);
        }
        return Err(Error::corrupt_at(path, 0, "not a torch.save zip archive (no zip local header at offset 0)"));
    }
    let entries = zipdir::read_directory(path, bytes)?;
    let pkl = entries
        .iter()
        .find(|e| e.name.ends_with("/data.pkl") && e.name.matches('/').count() == 1)
        .ok_or_else(|| Error::new(ErrorKind::Corrupt, path, Location::None, "archive has no '<prefix>/data.pkl' entry"))?;
    let prefix = pkl.name.strip_suffix("/data.pkl").unwrap_or_default().to_string();
    let by_name: HashMap<&str, &zipdir::Entry> = entries.iter().map(|e| (e.name.as_str(), e)).collect();
    if let Some(bo) = by_name.get(format!("{prefix}/byteorder").as_str()) {
        let r = bo.stored_range(path)?;
        let v = std::str::from_utf8(&bytes[r]).unwrap_or("?").trim();
        if v != "little" {
            return Err(Error::unsupported(
                path,
                Location::Offset { entry: Some(bo.name.clone()), offset: 0 },
                format!("byteorder is '{v}'; only little-endian files are supported"),
            ));
        }
    }
    let pr = pkl.stored_range(path)?;
    let pkl_start = pr.start as u64;
    let root = pickle::load(&bytes[pr], limits::pickle_limits()).map_err(|e| {
        let kind = if e.unsupported { ErrorKind::Unsupported } else { ErrorKind::Corrupt };
        Error::new(kind, path, Location::Offset { entry: Some(pkl.name.clone()), offset: e.offset }, e.reason)
            .in_entry(&pkl.name, pkl_start)
    })?;
    let data_prefix = format!("{prefix}/data/");
    let mut storages = HashMap::new();
    for e in &entries {
        if let Some(key) = e.name.strip_prefix(&data_prefix) {
            storages.insert(key.to_string(), e.stored_range(path)?);
        }
    }
    let index = PtIndex { prefix, root, storages };
    check_all(path, &index)?;
    Ok(index)
}

/// Validate every distinct tensor node against its storage (shared nodes once).
fn check_all(path: &Path, index: &PtIndex) -> Result<()> {
    for (key, t) in distinct_tensors(&index.root) {
        check_tensor(path, index, &key, &t)?;
    }
    Ok(())
}

/// The legacy format (`_use_new_zipfile_serialization=False`): pickles in sequence (magic,
/// protocol 1001, sys_info, the object, the sorted storage keys), then per key an int64 element
/// count and the raw little-endian bytes. Data is not aligned; Python copies where it must.
fn parse_legacy(path: &Path, bytes: &[u8]) -> Result<PtIndex> {
    let mut pos = 0usize;
    let next = |what: &str, pos: &mut usize| -> Result<Obj> {
        let (o, used) = pickle::load_prefix(&bytes[*pos..], limits::pickle_limits()).map_err(|e| {
            let kind = if e.unsupported { ErrorKind::Unsupported } else { ErrorKind::Corrupt };
            Error::new(kind, path, Location::Offset { entry: None, offset: (*pos as u64).saturating_add(e.offset) }, format!("legacy {what} pickle: {}", e.reason))
        })?;
        *pos = pos.saturating_add(used); // used <= bytes.len() - *pos
        Ok(o)
    };
    next("magic", &mut pos)?;
    match next("protocol", &mut pos)? {
        Obj::Int(1001) => {}
        other => return Err(Error::unsupported(path, Location::Offset { entry: None, offset: pos as u64 }, format!("legacy protocol {other:?} (only 1001)"))),
    }
    if let Obj::Dict(items) = next("sys_info", &mut pos)? {
        if items.iter().any(|(k, v)| *k == Obj::Str("little_endian".into()) && *v == Obj::Bool(false)) {
            return Err(Error::unsupported(path, Location::Offset { entry: None, offset: pos as u64 }, "file was written on a big-endian machine"));
        }
    }
    let root = next("object", &mut pos)?;
    let keys = match next("storage keys", &mut pos)? {
        Obj::List(ks) => ks,
        other => return Err(Error::corrupt_at(path, pos as u64, format!("legacy storage key list is a {other:?}"))),
    };
    let mut elsize = HashMap::new();
    for (_, t) in distinct_tensors(&root) {
        elsize.entry(t.storage.clone()).or_insert(t.dtype.itemsize());
    }
    let mut storages = HashMap::new();
    for k in keys.iter() {
        let Obj::Str(key) = k else { return Err(Error::corrupt_at(path, pos as u64, "legacy storage key is not a string")) };
        let key = key.to_string();
        let Some(head) = bytes.get(pos..).and_then(|r| r.get(..8)) else {
            return Err(Error::corrupt_at(path, pos as u64, format!("storage '{key}' header runs past the end of the file (truncated?)")));
        };
        let numel = u64::from_le_bytes(head.try_into().unwrap());
        let start = pos.saturating_add(8); // <= bytes.len(): the 8 bytes exist
        let es = *elsize.get(&key).unwrap_or(&1) as u64;
        let left = bytes.len().saturating_sub(start) as u64;
        let n = numel.checked_mul(es).filter(|n| *n <= left).ok_or_else(|| {
            Error::corrupt_at(path, pos as u64, format!("storage '{key}' claims {numel} elements of {es} bytes, past the end of the file (truncated?)"))
        })? as usize;
        // n <= left, so start + n <= bytes.len(): no overflow.
        let end = start.saturating_add(n);
        storages.insert(key, start..end);
        pos = end;
    }
    let index = PtIndex { prefix: String::new(), root, storages };
    check_all(path, &index)?;
    Ok(index)
}

fn check_tensor(path: &Path, index: &PtIndex, key: &str, t: &TensorSpec) -> Result<()> {
    let key = if key.is_empty() { "<root>" } else { key };
    let Some(range) = index.storages.get(&t.storage) else {
        return Err(Error::new(
            ErrorKind::Corrupt,
            path,
            Location::Key(key.to_string()),
            format!("tensor refers to storage '{}' but the file has no data for it (truncated?)", t.storage),
        ));
    };
    let need = t.storage_numel.checked_mul(t.dtype.itemsize() as u64);
    if need.map_or(true, |n| n > range.len() as u64) {
        return Err(Error::new(
            ErrorKind::Corrupt,
            path,
            Location::Key(key.to_string()),
            format!("storage '{}' holds {} bytes but {} elements of {} were declared", t.storage, range.len(), t.storage_numel, t.dtype.torch_name()),
        ));
    }
    let bad = |reason: String| Err(Error::new(ErrorKind::Corrupt, path, Location::Key(key.to_string()), reason));
    let itemsize = t.dtype.itemsize() as u64;
    if (range.len() as u64).checked_rem(itemsize) != Some(0) {
        return bad(format!("storage '{}' holds {} bytes, not a whole number of {} elements ({itemsize} bytes each)", t.storage, range.len(), t.dtype.torch_name()));
    }
    if t.requires_grad && !t.dtype.can_require_grad() {
        return bad(format!("a {} tensor cannot require gradients (only floating point and complex tensors can)", t.dtype.torch_name()));
    }
    // torch's numel: the running product of the sizes must not overflow (it is sticky, even if a
    // later size is 0) and must fit in int64; the view's last byte must fit in u64 too.
    let mut prod = Some(1u64);
    for &s in &t.size {
        prod = prod.and_then(|p| p.checked_mul(s));
    }
    if prod.map_or(true, |p| p > i64::MAX as u64) {
        return bad(format!("size {:?} has more elements than an int64 can count", t.size));
    }
    let end = t.end_element();
    if end.map_or(true, |e| e > t.storage_numel) {
        return Err(Error::new(
            ErrorKind::Corrupt,
            path,
            Location::Key(key.to_string()),
            format!(
                "view (offset {}, size {:?}, stride {:?}) reaches past the end of storage '{}' ({} elements)",
                t.offset, t.size, t.stride, t.storage, t.storage_numel
            ),
        ));
    }
    Ok(())
}

/// Depth-first walk over every tensor with its dotted key path (`a.b.0`). `f` returns false to
/// stop. The object is a DAG (shared references): subtrees without a tensor are skipped in O(1)
/// after their first visit, and at most `max_visits` nodes are entered (a reference-amplified
/// file would otherwise be walked exponentially): `Err(limit)` when that budget runs out.
pub fn visit_tensors<'a>(obj: &'a Obj, max_visits: usize, f: &mut dyn FnMut(&str, &'a TensorSpec) -> bool) -> std::result::Result<(), String> {
    let mut w = Walker { has_tensor: HashMap::new(), visits: 0, max_visits, stop: false };
    w.walk(obj, &mut String::new(), f)
}

struct Walker {
    has_tensor: HashMap<(u8, usize), bool>,
    visits: usize,
    max_visits: usize,
    stop: bool,
}

impl Walker {
    fn holds_tensor(&mut self, o: &Obj) -> bool {
        let Some(id) = o.node_id() else { return false };
        if let Some(h) = self.has_tensor.get(&id) {
            return *h;
        }
        let h = match o {
            Obj::Tensor(_) => true,
            Obj::Dict(items) => items.iter().any(|(_, v)| self.holds_tensor(v)),
            Obj::OrderedDict(d) => d.items.iter().any(|(_, v)| self.holds_tensor(v)),
            Obj::List(xs) | Obj::Tuple(xs) => xs.iter().any(|v| self.holds_tensor(v)),
            _ => false,
        };
        self.has_tensor.insert(id, h);
        h
    }

    fn walk<'a>(&mut self, obj: &'a Obj, path: &mut String, f: &mut dyn FnMut(&str, &'a TensorSpec) -> bool) -> std::result::Result<(), String> {
        if self.stop || !self.holds_tensor(obj) {
            return Ok(());
        }
        self.visits = self.visits.saturating_add(1);
        if self.visits > self.max_visits {
            return Err(format!("listing the tensors would visit more than {} key paths (limit max_nodes)", self.max_visits));
        }
        let mut child = |w: &mut Walker, path: &mut String, name: &str, o: &'a Obj| {
            let n = path.len();
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(name);
            let r = w.walk(o, path, f);
            path.truncate(n);
            r
        };
        match obj {
            Obj::Tensor(t) => {
                if !f(path, t) {
                    self.stop = true;
                }
            }
            Obj::Dict(items) => {
                for (k, v) in items.iter() {
                    child(self, path, &key_name(k), v)?;
                }
            }
            Obj::OrderedDict(d) => {
                for (k, v) in d.items.iter() {
                    child(self, path, &key_name(k), v)?;
                }
            }
            Obj::List(xs) | Obj::Tuple(xs) => {
                for (i, v) in xs.iter().enumerate() {
                    child(self, path, &i.to_string(), v)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Every distinct tensor node once, with the first key path that reaches it.
pub fn distinct_tensors(obj: &Obj) -> Vec<(String, Arc<TensorSpec>)> {
    fn go(o: &Obj, path: &mut String, seen: &mut HashSet<(u8, usize)>, out: &mut Vec<(String, Arc<TensorSpec>)>) {
        if let Some(id) = o.node_id() {
            if !seen.insert(id) {
                return;
            }
        }
        let child = |path: &mut String, name: &str, v: &Obj, seen: &mut HashSet<(u8, usize)>, out: &mut Vec<(String, Arc<TensorSpec>)>| {
            let n = path.len();
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(name);
            go(v, path, seen, out);
            path.truncate(n);
        };
        match o {
            Obj::Tensor(t) => out.push((path.clone(), t.clone())),
            Obj::Dict(items) => items.iter().for_each(|(k, v)| child(path, &key_name(k), v, seen, out)),
            Obj::OrderedDict(d) => d.items.iter().for_each(|(k, v)| child(path, &key_name(k), v, seen, out)),
            Obj::List(xs) | Obj::Tuple(xs) => xs.iter().enumerate().for_each(|(i, v)| child(path, &i.to_string(), v, seen, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    go(obj, &mut String::new(), &mut HashSet::new(), &mut out);
    out
}

fn key_name(k: &Obj) -> String {
    match k {
        Obj::Str(s) => s.to_string(),
        Obj::Int(i) => i.to_string(),
        Obj::Bool(b) => b.to_string(),
        other => format!("{other:?}"),
    }
}

/// Find a tensor by key: a top-level dict key, or a dotted path into nested dicts/lists.
pub fn find_tensor<'a>(root: &'a Obj, key: &str) -> Option<&'a TensorSpec> {
    fn lookup<'a>(o: &'a Obj, k: &str) -> Option<&'a Obj> {
        match o {
            Obj::Dict(items) => items.iter().find(|(kk, _)| key_name(kk) == k).map(|(_, v)| v),
            Obj::OrderedDict(d) => d.items.iter().find(|(kk, _)| key_name(kk) == k).map(|(_, v)| v),
            Obj::List(xs) | Obj::Tuple(xs) => k.parse::<usize>().ok().and_then(|i| xs.get(i)),
            _ => None,
        }
    }
    if let Some(Obj::Tensor(t)) = lookup(root, key) {
        return Some(t);
    }
    let mut cur = root;
    for part in key.split('.') {
        cur = lookup(cur, part)?;
    }
    match cur {
        Obj::Tensor(t) => Some(t),
        _ => None,
    }
}

/// A C-contiguous array inside a file: what the shard loader needs to gather rows with `pread`.
#[derive(Debug, Clone, PartialEq)]
pub struct ArrayLoc {
    pub dtype: DType,
    pub shape: Vec<u64>,
    /// Absolute byte offset of element 0 in the file.
    pub data_offset: u64,
}

impl ArrayLoc {
    pub fn rows(&self) -> u64 {
        self.shape.first().copied().unwrap_or(0)
    }
    /// Bytes per row (sample); `None` when that overflows u64 (possible only with 0 rows).
    pub fn row_bytes(&self) -> Option<u64> {
        self.shape.iter().skip(1).try_fold(self.dtype.itemsize() as u64, |a, &d| a.checked_mul(d))
    }
}

/// Locate `key` in a parsed `.pt` as a C-contiguous array with at least one dimension.
pub fn array_loc(path: &Path, index: &PtIndex, key: &str) -> Result<ArrayLoc> {
    let Some(t) = find_tensor(&index.root, key) else {
        let mut keys = Vec::new();
        let _ = visit_tensors(&index.root, 10_000, &mut |k, _| {
            keys.push(k.to_string());
            keys.len() < 20
        });
        return Err(Error::schema(path, key, format!("no tensor under this key; tensors in the file: {keys:?}")));
    };
    if t.size.is_empty() {
        return Err(Error::schema(path, key, "tensor is 0-d; a shard tensor needs a leading sample dimension"));
    }
    if !t.is_c_contiguous() {
        return Err(Error::schema(
            path,
            key,
            format!("tensor is not C-contiguous (size {:?}, stride {:?}); save it with .contiguous()", t.size, t.stride),
        ));
    }
    let range = &index.storages[&t.storage];
    // check_tensor bounded offset <= storage_numel and storage_numel * itemsize <= the entry.
    let data_offset = t.offset.checked_mul(t.dtype.itemsize() as u64).and_then(|o| o.checked_add(range.start as u64));
    let Some(data_offset) = data_offset else { return Err(Error::schema(path, key, "tensor offset overflows")) };
    Ok(ArrayLoc { dtype: t.dtype, shape: t.size.clone(), data_offset })
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use crate::pickle::tests::tensor_dict_pickle;
    use crate::zipdir::testzip;

    fn archive(pkl: &[u8], data: &[u8]) -> Vec<u8> {
        testzip::write(&[("shard/data.pkl", pkl), ("shard/byteorder", b"little"), ("shard/data/0", data)], false, 64)
    }

    #[test]
    fn parses_and_locates_rows() {
        let data: Vec<u8> = (0..96u8).collect();
        let pkl = tensor_dict_pickle("latents", "FloatStorage", "0", 24, &[4, 6], &[6, 1], 0);
        let bytes = archive(&pkl, &data);
        let p = Path::new("shard.pt");
        let idx = parse(p, &bytes).unwrap();
        assert_eq!(idx.prefix, "shard");
        let loc = array_loc(p, &idx, "latents").unwrap();
        assert_eq!(loc.rows(), 4);
        assert_eq!(loc.row_bytes(), Some(24));
        assert_eq!(&bytes[loc.data_offset as usize..loc.data_offset as usize + 4], &[0, 1, 2, 3]);
        assert_eq!(loc.data_offset % 64, 0);
        let e = array_loc(p, &idx, "labels").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Schema);
        assert!(e.to_string().contains("labels"));
    }

    #[test]
    fn view_past_storage_is_corrupt() {
        let data = vec![0u8; 96];
        let pkl = tensor_dict_pickle("x", "FloatStorage", "0", 24, &[5, 6], &[6, 1], 0);
        let e = parse(Path::new("s.pt"), &archive(&pkl, &data)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Corrupt);
        assert!(e.to_string().contains("key 'x'"), "{e}");
        // Declared numel larger than the entry.
        let pkl = tensor_dict_pickle("x", "FloatStorage", "0", 25, &[4, 6], &[6, 1], 0);
        assert!(parse(Path::new("s.pt"), &archive(&pkl, &data)).is_err());
    }

    #[test]
    fn partial_elements_grad_on_ints_and_numel_overflow_are_corrupt() {
        // fuzz-pt-2 B1: a 10-byte entry under a float32 storage of 2 elements.
        let pkl = tensor_dict_pickle("x", "FloatStorage", "0", 2, &[2], &[1], 0);
        let e = parse(Path::new("s.pt"), &archive(&pkl, &[0u8; 10])).unwrap_err();
        assert!(e.to_string().contains("whole number"), "{e}");
        // B2: an int64 tensor with requires_grad=True (NEWFALSE flipped to NEWTRUE).
        let mut pkl = tensor_dict_pickle("x", "LongStorage", "0", 2, &[2], &[1], 0);
        let i = pkl.iter().rposition(|&b| b == 0x89).unwrap();
        pkl[i] = 0x88;
        let e = parse(Path::new("s.pt"), &archive(&pkl, &[0u8; 16])).unwrap_err();
        assert!(e.to_string().contains("cannot require gradients"), "{e}");
        // B3: sizes (2^30, 2^30, 2^30, 0): the products overflow int64 with stride 0.
        let pkl = tensor_dict_pickle("x", "FloatStorage", "0", 4, &[1 << 30, 1 << 30, 1 << 30, 0], &[0, 0, 0, 0], 0);
        let e = parse(Path::new("s.pt"), &archive(&pkl, &[0u8; 16])).unwrap_err();
        assert!(e.to_string().contains("int64"), "{e}");
    }

    #[test]
    fn big_endian_and_legacy_are_refused() {
        let data = vec![0u8; 96];
        let pkl = tensor_dict_pickle("x", "FloatStorage", "0", 24, &[4, 6], &[6, 1], 0);
        let bytes = testzip::write(&[("s/data.pkl", &pkl), ("s/byteorder", b"big"), ("s/data/0", &data)], false, 64);
        let e = parse(Path::new("s.pt"), &bytes).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unsupported);
        let mut legacy = vec![0x80, 0x02, 0x8a, 0x0a];
        legacy.extend_from_slice(&LEGACY_MAGIC);
        legacy.push(b'.');
        legacy.extend_from_slice(&[0u8; 30]);
        let e = parse(Path::new("s.pt"), &legacy).unwrap_err();
        assert!(e.to_string().contains("legacy"), "{e}");
        // Protocol 4 (FRAME before the magic) is recognised as legacy too.
        let mut p4 = vec![0x80, 0x04, 0x95];
        p4.extend_from_slice(&11u64.to_le_bytes());
        p4.extend_from_slice(&[0x8a, 0x0a]);
        p4.extend_from_slice(&LEGACY_MAGIC);
        p4.push(b'.');
        assert!(is_legacy(&p4));
        assert!(!is_legacy(&p4[..12]));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let data: Vec<u8> = (0..96u8).collect();
        let pkl = tensor_dict_pickle("latents", "FloatStorage", "0", 24, &[4, 6], &[6, 1], 0);
        let bytes = archive(&pkl, &data);
        for cut in 0..bytes.len() {
            assert!(parse(Path::new("s.pt"), &bytes[..cut]).is_err(), "cut at {cut}");
        }
    }
}
