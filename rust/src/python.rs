//! The one PyO3 glue file: argument conversion, GIL release around all work and waiting,
//! numpy wrapping (zero-copy: mmap views and moved Rust buffers) and error mapping.
//! Python (`vqfast.io`) turns the numpy arrays into torch tensors. No loader policy lives here:
//! plans, validation, skip and read-ahead rules are in the core (`clips`, `shards`, `plan`).
use crate::clips::{ClipConfig, ClipSet, OnError};
use crate::error::{panic_message, Error, ErrorKind};
use crate::pickle::Obj;
use crate::plan::PlanConfig;
use crate::prefetch::{Job, Next, Pipeline};
use crate::ptfile::{self, PtFile};
use crate::rearrange;
use crate::shards::{self, ShardSet};
use numpy::ndarray::ArrayView1;
use numpy::{PyArray1, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyFrozenSet, PyList, PySet, PyTuple};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Python exception for a core error: the class from `vqfast.io.errors`, with attributes.
fn to_pyerr(py: Python<'_>, e: Error) -> PyErr {
    let cls = match e.kind {
        ErrorKind::Corrupt => "CorruptShardError",
        ErrorKind::Unsupported => "UnsupportedFormatError",
        ErrorKind::Schema => "SchemaError",
        ErrorKind::Io => "ShardIOError",
        ErrorKind::NotFound => "ShardNotFoundError",
        ErrorKind::Decode => "FrameDecodeError",
        ErrorKind::Argument => return PyValueError::new_err(e.to_string()),
        ErrorKind::Internal => "InternalLoaderError",
        ErrorKind::Closed => "LoaderClosedError",
    };
    let build = || -> PyResult<PyErr> {
        let m = py.import("vqfast.io.errors")?;
        let exc = m.getattr(cls)?.call1((e.to_string(),))?;
        let path = e.path.display().to_string();
        exc.setattr("path", if path.is_empty() { None } else { Some(path) })?;
        exc.setattr("location", e.location_string())?;
        exc.setattr("reason", e.reason.clone())?;
        exc.setattr("kind", e.kind.name())?;
        Ok(PyErr::from_value(exc))
    };
    build().unwrap_or_else(|err| err)
}

/// Run core work with panics turned into `Internal` errors (never an abort).
fn guarded<T>(f: impl FnOnce() -> crate::error::Result<T>) -> crate::error::Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => Err(Error::internal(format!("panic in vqfast._io: {}", panic_message(&*p)))),
    }
}

fn detach_guarded<T: Send>(py: Python<'_>, f: impl FnOnce() -> crate::error::Result<T> + Send) -> PyResult<T> {
    py.detach(|| guarded(f)).map_err(|e| to_pyerr(py, e))
}

// ---------------------------------------------------------------------------------------------
// .pt files

/// A memory-mapped, parsed `.pt` file. `storage(key)` views its bytes zero-copy.
#[pyclass(module = "vqfast._io", frozen)]
struct PtArchive {
    file: PtFile,
}

#[pymethods]
impl PtArchive {
    #[new]
    fn new(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let file = py.detach(|| guarded(|| PtFile::open(&path)).map_err(|e| if e.path.as_os_str().is_empty() { e.with_path(&path) } else { e })).map_err(|e| to_pyerr(py, e))?;
        Ok(PtArchive { file })
    }

    #[getter]
    fn prefix(&self) -> &str {
        &self.file.index.prefix
    }

    #[getter]
    fn path(&self) -> String {
        self.file.path.display().to_string()
    }

    /// The bytes of storage `key` as a writable uint8 array viewing the private mapping.
    fn storage<'py>(slf: Bound<'py, Self>, key: &str) -> PyResult<Bound<'py, PyArray1<u8>>> {
        let this = slf.get();
        let Some(r) = this.file.index.storages.get(key) else {
            return Err(PyValueError::new_err(format!("{}: no storage '{key}'", this.file.path.display())));
        };
        let len = r.len();
        let ptr = if len == 0 { std::ptr::NonNull::<u8>::dangling().as_ptr() } else { unsafe { this.file.map.as_ptr().add(r.start) as *mut u8 } };
        // SAFETY: the mapping lives as long as `slf` (the array's base object) and is never remapped.
        unsafe {
            let view = ArrayView1::from_shape_ptr(len, ptr as *const u8);
            Ok(PyArray1::borrow_from_array(&view, slf.clone().into_any()))
        }
    }

    /// Build the Python object; `factory` makes tensors (`tensor(storage_key, dtype, offset, size,
    /// stride, requires_grad, parameter)`), `size(tuple)`, `device(type, index)` and `dtype(name)`.
    /// A node the pickle shares (memo references) becomes one Python object, as in `torch.load`.
    fn build<'py>(&self, py: Python<'py>, factory: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let odict = py.import("collections")?.getattr("OrderedDict")?;
        let mut b = PyBuilder { py, factory, odict: &odict, done: HashMap::new() };
        b.obj(&self.file.index.root)
    }

    /// Every tensor as `(paths, slots, specs)`: `paths[i]` reaches the distinct tensor
    /// `specs[slots[i]]` = (dtype, size, stride, storage offset, storage key, requires_grad,
    /// parameter). Shared tensors are described once (a file may reference one tensor 10^6
    /// times); paths and slots are str/int lists, which the cyclic GC does not track.
    #[allow(clippy::type_complexity)]
    fn tensors(&self, py: Python<'_>) -> PyResult<(Vec<String>, Vec<usize>, Vec<(&'static str, Vec<u64>, Vec<u64>, u64, String, bool, bool)>)> {
        let (mut paths, mut slots, mut specs) = (Vec::new(), Vec::new(), Vec::new());
        let mut slot_of: HashMap<*const crate::pickle::TensorSpec, usize> = HashMap::new();
        let budget = crate::limits::pickle_limits().max_nodes;
        let r = ptfile::visit_tensors(&self.file.index.root, budget, &mut |k, t| {
            let slot = *slot_of.entry(t as *const _).or_insert_with(|| {
                specs.push((t.dtype.torch_name(), t.size.clone(), t.stride.clone(), t.offset, t.storage.clone(), t.requires_grad, t.parameter));
                specs.len() - 1
            });
            paths.push(k.to_string());
            slots.push(slot);
            true
        });
        match r {
            Ok(()) => Ok((paths, slots, specs)),
            Err(reason) => Err(to_pyerr(py, Error::new(ErrorKind::Corrupt, &self.file.path, crate::error::Location::None, reason))),
        }
    }
}

/// Obj DAG → Python objects, memoised on node identity (each shared node is built once and
/// referenced wherever the pickle referenced it). Recursion depth is bounded by the VM's
/// `max_depth`.
struct PyBuilder<'a, 'py> {
    py: Python<'py>,
    factory: &'a Bound<'py, PyAny>,
    odict: &'a Bound<'py, PyAny>,
    done: HashMap<(u8, usize), Bound<'py, PyAny>>,
}

impl<'py> PyBuilder<'_, 'py> {
    fn obj(&mut self, o: &Obj) -> PyResult<Bound<'py, PyAny>> {
        let id = o.node_id();
        if let Some(id) = id {
            if let Some(v) = self.done.get(&id) {
                return Ok(v.clone());
            }
        }
        let v = self.build(o)?;
        if let Some(id) = id {
            self.done.insert(id, v.clone());
        }
        Ok(v)
    }

    fn list(&mut self, xs: &[Obj]) -> PyResult<Vec<Bound<'py, PyAny>>> {
        xs.iter().map(|x| self.obj(x)).collect()
    }

    fn build(&mut self, o: &Obj) -> PyResult<Bound<'py, PyAny>> {
        let py = self.py;
        Ok(match o {
            Obj::None => py.None().into_bound(py),
            Obj::Bool(b) => b.into_pyobject(py)?.to_owned().into_any(),
            Obj::Int(i) => i.into_pyobject(py)?.into_any(),
            Obj::BigInt(b) => {
                let int = py.import("builtins")?.getattr("int")?;
                let kw = PyDict::new(py);
                kw.set_item("signed", true)?;
                int.call_method("from_bytes", (PyBytes::new(py, b), "little"), Some(&kw))?
            }
            Obj::Float(f) => f.into_pyobject(py)?.into_any(),
            Obj::Complex(a, b) => py.import("builtins")?.getattr("complex")?.call1((*a, *b))?,
            Obj::Str(s) => s.into_pyobject(py)?.into_any(),
            Obj::Bytes(b) => PyBytes::new(py, b).into_any(),
            Obj::ByteArray(b) => pyo3::types::PyByteArray::new(py, b).into_any(),
            Obj::Tuple(xs) => PyTuple::new(py, self.list(xs)?)?.into_any(),
            Obj::List(xs) => PyList::new(py, self.list(xs)?)?.into_any(),
            Obj::Set(xs) => PySet::new(py, self.list(xs)?)?.into_any(),
            Obj::FrozenSet(xs) => PyFrozenSet::new(py, self.list(xs)?)?.into_any(),
            Obj::Dict(items) => {
                let d = PyDict::new(py);
                for (k, v) in items.iter() {
                    d.set_item(self.obj(k)?, self.obj(v)?)?;
                }
                d.into_any()
            }
            Obj::OrderedDict(od) => {
                let d = self.odict.call0()?;
                for (k, v) in od.items.iter() {
                    d.set_item(self.obj(k)?, self.obj(v)?)?;
                }
                for (k, v) in od.attrs.iter() {
                    // The VM admits only `_metadata` (what torch's state_dict sets).
                    if let Obj::Str(name) = k {
                        d.setattr(&**name, self.obj(v)?)?;
                    }
                }
                d
            }
            Obj::Tensor(t) => self.factory.call_method1(
                "tensor",
                (t.storage.as_str(), t.dtype.torch_name(), t.offset, PyTuple::new(py, &t.size)?, PyTuple::new(py, &t.stride)?, t.requires_grad, t.parameter),
            )?,
            Obj::Size(dims) => self.factory.call_method1("size", (PyTuple::new(py, dims.iter())?,))?,
            Obj::Device(ty, idx) => self.factory.call_method1("device", (&**ty, *idx))?,
            Obj::Dtype(d) => self.factory.call_method1("dtype", (d.torch_name(),))?,
        })
    }
}

/// `(max_nodes, max_bytes, max_depth, max_frame_pixels)` now in force.
#[pyfunction]
fn get_limits() -> (u64, u64, u64, u64) {
    let l = crate::limits::get();
    (l.max_nodes, l.max_bytes, l.max_depth, l.max_frame_pixels)
}

/// Set the reader limits (process-wide); see `vqfast.io.set_limits`.
#[pyfunction]
fn set_limits(max_nodes: u64, max_bytes: u64, max_depth: u64, max_frame_pixels: u64) -> PyResult<()> {
    crate::limits::set(crate::limits::ReaderLimits { max_nodes, max_bytes, max_depth, max_frame_pixels }).map_err(PyValueError::new_err)
}

// ---------------------------------------------------------------------------------------------
// Iteration shared by the two loaders

struct Batch {
    ids: Vec<i64>,
    buffers: Vec<Vec<u8>>,
    errors: Vec<String>,
}

/// An in-order stream of prefetched batches. `close()` (or dropping it) cancels and joins.
#[pyclass(module = "vqfast._io", frozen)]
struct BatchStream {
    pipe: Mutex<Option<Pipeline<Batch>>>,
}

#[pymethods]
impl BatchStream {
    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    /// `(ids int64[n], [uint8 buffer per field], [error strings])`, or StopIteration.
    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyTuple>>> {
        loop {
            let r = py.detach(|| {
                let g = self.pipe.lock().unwrap_or_else(|p| p.into_inner());
                match g.as_ref() {
                    None => Next::Done,
                    Some(p) => p.next(Duration::from_millis(100)),
                }
            });
            match r {
                Next::Timeout => py.check_signals()?,
                Next::Done => return Ok(None),
                Next::Item(Err(e)) => return Err(to_pyerr(py, e)),
                Next::Item(Ok(b)) => {
                    let ids = PyArray1::from_vec(py, b.ids);
                    let bufs: Vec<_> = b.buffers.into_iter().map(|v| PyArray1::from_vec(py, v)).collect();
                    let t = PyTuple::new(py, [ids.into_any(), PyList::new(py, bufs)?.into_any(), PyList::new(py, b.errors)?.into_any()])?;
                    return Ok(Some(t));
                }
            }
        }
    }

    /// Stop the workers and wait for them (bounded by one in-flight batch per thread).
    fn close(&self, py: Python<'_>) {
        let pipe = self.pipe.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(p) = pipe {
            py.detach(move || drop(p));
        }
    }
}

fn plan_config(batch_size: usize, shuffle: bool, seed: u64, rank: usize, world_size: usize, drop_last: bool, block: usize) -> PyResult<PlanConfig> {
    let cfg = PlanConfig { batch_size, shuffle, seed, rank, world_size, drop_last, block_groups: block };
    cfg.validate().map_err(PyValueError::new_err)?;
    Ok(cfg)
}

// ---------------------------------------------------------------------------------------------
// Latent shards

#[pyclass(module = "vqfast._io", frozen)]
struct ShardSetCore {
    set: Arc<ShardSet>,
    cfg: PlanConfig,
}

#[pymethods]
impl ShardSetCore {
    #[new]
    #[pyo3(signature = (paths, keys, *, batch_size, shuffle, seed, rank, world_size, drop_last, block_shards, skip_errors))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        paths: Vec<PathBuf>,
        keys: Vec<String>,
        batch_size: usize,
        shuffle: bool,
        seed: u64,
        rank: usize,
        world_size: usize,
        drop_last: bool,
        block_shards: usize,
        skip_errors: bool,
    ) -> PyResult<Self> {
        let cfg = plan_config(batch_size, shuffle, seed, rank, world_size, drop_last, block_shards)?;
        let set = detach_guarded(py, || ShardSet::open(&paths, &keys, skip_errors))?;
        Ok(ShardSetCore { set: Arc::new(set), cfg })
    }

    /// `[(key, dtype, row_shape)]`.
    fn fields(&self) -> Vec<(String, &'static str, Vec<u64>)> {
        self.set.fields.iter().map(|f| (f.key.clone(), f.dtype.torch_name(), f.row_shape.clone())).collect()
    }

    /// `[(path, message)]` of shards left out in skip mode.
    fn skipped(&self) -> Vec<(String, String)> {
        self.set.skipped.iter().map(|e| (e.path.display().to_string(), e.to_string())).collect()
    }

    fn paths(&self) -> Vec<String> {
        self.set.shards.iter().map(|s| s.path.display().to_string()).collect()
    }

    fn sizes(&self) -> Vec<u64> {
        self.set.sizes()
    }

    fn num_batches(&self) -> usize {
        self.set.num_batches(&self.cfg)
    }

    fn fingerprint(&self) -> u64 {
        self.set.fingerprint(&self.cfg)
    }

    /// This rank's sample ids for `epoch`, batch after batch (int64).
    fn plan<'py>(&self, py: Python<'py>, epoch: u64) -> PyResult<Bound<'py, PyArray1<i64>>> {
        let (set, cfg) = (&self.set, &self.cfg);
        let p = detach_guarded(py, || Ok(set.rank_plan(cfg, epoch)))?;
        Ok(PyArray1::from_vec(py, p.samples.iter().map(|&s| s as i64).collect()))
    }

    #[pyo3(signature = (epoch, start_batch, num_threads, prefetch))]
    fn iterate(&self, py: Python<'_>, epoch: u64, start_batch: usize, num_threads: usize, prefetch: usize) -> PyResult<BatchStream> {
        let set = self.set.clone();
        let cfg = self.cfg.clone();
        let pipe = detach_guarded(py, move || {
            let rp = Arc::new(set.rank_plan(&cfg, epoch));
            let n = rp.num_batches();
            let ahead = shards::read_ahead_distance(prefetch, num_threads);
            let job: Job<Batch> = Arc::new(move |k| {
                let buffers = set.load_batch(&rp, k, epoch, ahead)?;
                Ok(Batch { ids: rp.batch(k).iter().map(|&i| i as i64).collect(), buffers, errors: Vec::new() })
            });
            Pipeline::start(start_batch.min(n), n, prefetch, num_threads, job)
        })?;
        Ok(BatchStream { pipe: Mutex::new(Some(pipe)) })
    }
}

// ---------------------------------------------------------------------------------------------
// Video clips from frame folders (or image folders)

#[pyclass(module = "vqfast._io", frozen)]
struct ClipSetCore {
    set: Arc<ClipSet>,
    cfg: PlanConfig,
}

#[pymethods]
impl ClipSetCore {
    #[new]
    #[pyo3(signature = (root, *, clip_len, frame_stride, height, width, random_crop, batch_size, shuffle, seed, rank, world_size, drop_last, timeout_s=60.0, images=false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        root: PathBuf,
        clip_len: usize,
        frame_stride: usize,
        height: usize,
        width: usize,
        random_crop: bool,
        batch_size: usize,
        shuffle: bool,
        seed: u64,
        rank: usize,
        world_size: usize,
        drop_last: bool,
        timeout_s: f64,
        images: bool,
    ) -> PyResult<Self> {
        let cfg = plan_config(batch_size, shuffle, seed, rank, world_size, drop_last, 0)?;
        let clip = ClipConfig { clip_len, frame_stride, out_h: height, out_w: width, random_crop, seed, timeout_s, images };
        let set = detach_guarded(py, move || ClipSet::open(&root, clip))?;
        Ok(ClipSetCore { set: Arc::new(set), cfg })
    }

    fn video_dirs(&self) -> Vec<String> {
        self.set.videos.iter().map(|v| v.dir.display().to_string()).collect()
    }

    fn frame_counts(&self) -> Vec<u64> {
        self.set.frame_counts()
    }

    fn too_short(&self) -> Vec<String> {
        self.set.short.iter().map(|p| p.display().to_string()).collect()
    }

    fn num_batches(&self) -> usize {
        self.set.num_batches(&self.cfg)
    }

    fn fingerprint(&self) -> u64 {
        self.set.fingerprint(&self.cfg)
    }

    /// This rank's `(video id, first frame)` for every clip of `epoch`, batch after batch.
    fn plan(&self, py: Python<'_>, epoch: u64) -> PyResult<Vec<(u64, usize)>> {
        let (set, cfg) = (&self.set, &self.cfg);
        detach_guarded(py, || Ok(set.clip_plan(cfg, epoch)))
    }

    #[pyo3(signature = (epoch, start_batch, num_threads, prefetch, skip_errors))]
    fn iterate(&self, py: Python<'_>, epoch: u64, start_batch: usize, num_threads: usize, prefetch: usize, skip_errors: bool) -> PyResult<BatchStream> {
        let set = self.set.clone();
        let cfg = self.cfg.clone();
        let on_error = if skip_errors { OnError::Skip } else { OnError::Raise };
        let pipe = detach_guarded(py, move || {
            let rp = Arc::new(set.rank_plan(&cfg, epoch));
            let n = rp.num_batches();
            let job: Job<Batch> = Arc::new(move |k| {
                let b = set.load_batch(&rp, k, epoch, on_error)?;
                Ok(Batch {
                    ids: b.ids.iter().map(|&v| v as i64).collect(),
                    buffers: vec![b.frames],
                    errors: b.errors.iter().map(|e| e.to_string()).collect(),
                })
            });
            Pipeline::start(start_batch.min(n), n, prefetch, num_threads, job)
        })?;
        Ok(BatchStream { pipe: Mutex::new(Some(pipe)) })
    }
}

// ---------------------------------------------------------------------------------------------

/// `uint8 (B, T, H, W, C)` → `float32 ((B*T), C, H, W)` with `(x / 255 - mean) / std`.
#[pyfunction]
#[pyo3(signature = (frames, mean, std, num_threads))]
fn frames_to_model_input<'py>(
    py: Python<'py>,
    frames: PyReadonlyArrayDyn<'py, u8>,
    mean: Vec<f32>,
    std: Vec<f32>,
    num_threads: usize,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let shape = frames.shape().to_vec();
    if shape.len() != 5 {
        return Err(PyValueError::new_err(format!("frames must be uint8 (B, T, H, W, C), got {} dims {:?}", shape.len(), shape)));
    }
    let (b, t, h, w, c) = (shape[0], shape[1], shape[2], shape[3], shape[4]);
    if mean.len() != c || std.len() != c {
        return Err(PyValueError::new_err(format!("mean/std need {c} values (one per channel), got {} and {}", mean.len(), std.len())));
    }
    if let Some(s) = std.iter().find(|s| **s == 0.0) {
        return Err(PyValueError::new_err(format!("std values must be non-zero, got {s}")));
    }
    let src = frames.as_slice().map_err(|_| PyValueError::new_err("frames must be C-contiguous"))?;
    let n = b * t * h * w * c;
    let out = py.detach(|| {
        let table = rearrange::lut(&mean, &std);
        let mut out = vec![0f32; n];
        rearrange::hwc_to_chw_normalise(src, &mut out, b * t, h * w, c, &table, num_threads);
        out
    });
    PyArray1::from_vec(py, out).reshape(vec![b * t, c, h, w])
}

#[pymodule]
fn _io(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<PtArchive>()?;
    m.add_class::<BatchStream>()?;
    m.add_class::<ShardSetCore>()?;
    m.add_class::<ClipSetCore>()?;
    m.add_function(wrap_pyfunction!(frames_to_model_input, m)?)?;
    m.add_function(wrap_pyfunction!(get_limits, m)?)?;
    m.add_function(wrap_pyfunction!(set_limits, m)?)?;
    m.add("HAS_VIDEO", cfg!(feature = "video"))?;
    Ok(())
}
