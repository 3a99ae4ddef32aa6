//! A restricted pickle virtual machine: only the opcodes and the allow-listed globals that
//! `torch.load(weights_only=True)` accepts for tensors, containers and scalars.
//!
//! Nothing is ever imported or called. A `GLOBAL` outside the allow-list is an error naming it
//! and its byte offset; `REDUCE` dispatches on the allow-listed globals only and builds plain
//! descriptions (a tensor is `(storage key, dtype, offset, size, stride)` in elements).
//! Hard limits on input size, stack, memo and output nesting make it safe on hostile input.
//! The result is an owned, `Send` DAG ([`Obj`]); the glue turns it into Python objects.
//! Every count and offset derived from the input uses checked or saturating arithmetic (lint below).
#![deny(clippy::arithmetic_side_effects)]
use crate::dtype::DType;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;

/// Limits. The defaults are far above what torch writes (about 10 memo slots per tensor).
/// `max_nodes` bounds the values the VM builds (every push and every element copied into a
/// container counts), `max_bytes` the str/bytes/long payload it materialises; shared (memo)
/// references count once, as they are one object. Each refusal names the limit.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_stack: usize,
    pub max_memo: usize,
    pub max_depth: usize,
    pub max_nodes: usize,
    pub max_str: usize,
    pub max_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_stack: 1 << 20, max_memo: 1 << 22, max_depth: 200, max_nodes: 1 << 24, max_str: 1 << 30, max_bytes: 1 << 30 }
    }
}

/// A tensor as described by `_rebuild_tensor_v2/v3`; offsets, sizes, strides in elements.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    /// The storage key (`data/<key>` in the zip).
    pub storage: String,
    /// Element type of the storage (and the tensor).
    pub dtype: DType,
    /// Elements in the storage, from the persistent id (bytes for an untyped storage).
    pub storage_numel: u64,
    pub offset: u64,
    pub size: Vec<u64>,
    pub stride: Vec<u64>,
    pub requires_grad: bool,
    /// Built through `_rebuild_parameter*` or `_rebuild_from_type_v2(Parameter)`.
    pub parameter: bool,
}

impl TensorSpec {
    /// Element count; `None` when it overflows u64.
    pub fn numel(&self) -> Option<u64> {
        self.size.iter().try_fold(1u64, |a, &s| a.checked_mul(s))
    }
    /// True when the element at index i is at `offset + i` (C order), ignoring size-1 dims.
    pub fn is_c_contiguous(&self) -> bool {
        let mut expect = 1u64;
        for (s, st) in self.size.iter().zip(&self.stride).rev() {
            if *s != 1 && *st != expect {
                return false;
            }
            expect = expect.saturating_mul(*s);
        }
        true
    }
    /// One past the last element the view touches (0 when empty).
    pub fn end_element(&self) -> Option<u64> {
        if self.size.iter().any(|&s| s == 0) {
            return Some(self.offset);
        }
        let mut last = self.offset;
        for (s, st) in self.size.iter().zip(&self.stride) {
            last = last.checked_add(s.checked_sub(1)?.checked_mul(*st)?)?;
        }
        last.checked_add(1)
    }
}

/// An OrderedDict: items, then instance attributes set by BUILD (a state_dict's `_metadata`).
#[derive(Debug, Clone, PartialEq)]
pub struct ODict {
    pub items: Vec<(Obj, Obj)>,
    pub attrs: Vec<(Obj, Obj)>,
}

/// The owned result: a DAG, not a tree. A value the pickle references several times (memo) is
/// one shared node (`Arc`), so aliasing is kept as `torch.load` keeps it, and nothing is copied.
/// Its depth is at most `Limits::max_depth` and it has no cycles.
#[derive(Debug, Clone, PartialEq)]
pub enum Obj {
    None,
    Bool(bool),
    Int(i64),
    /// Little-endian two's complement bytes of an int that does not fit in i64.
    BigInt(Arc<Vec<u8>>),
    Float(f64),
    Complex(f64, f64),
    Str(Arc<str>),
    Bytes(Arc<Vec<u8>>),
    ByteArray(Arc<Vec<u8>>),
    Tuple(Arc<Vec<Obj>>),
    List(Arc<Vec<Obj>>),
    Dict(Arc<Vec<(Obj, Obj)>>),
    OrderedDict(Arc<ODict>),
    Set(Arc<Vec<Obj>>),
    FrozenSet(Arc<Vec<Obj>>),
    Tensor(Arc<TensorSpec>),
    /// `torch.Size(...)`.
    Size(Arc<Vec<i64>>),
    /// `torch.device(type[, index])`.
    Device(Arc<str>, Option<i64>),
    /// `torch.<dtype>` object.
    Dtype(DType),
}

impl Obj {
    /// Identity of a shared node: (variant, address). Two references to one node give the same
    /// key; converters memoise on it so that a shared node becomes one Python object.
    pub fn node_id(&self) -> Option<(u8, usize)> {
        fn a<T: ?Sized>(p: &Arc<T>) -> usize {
            Arc::as_ptr(p) as *const u8 as usize
        }
        Some(match self {
            Obj::BigInt(p) => (1, a(p)),
            Obj::Str(p) => (2, a(p)),
            Obj::Bytes(p) => (3, a(p)),
            Obj::ByteArray(p) => (4, a(p)),
            Obj::Tuple(p) => (5, a(p)),
            Obj::List(p) => (6, a(p)),
            Obj::Dict(p) => (7, a(p)),
            Obj::OrderedDict(p) => (8, a(p)),
            Obj::Set(p) => (9, a(p)),
            Obj::FrozenSet(p) => (10, a(p)),
            Obj::Tensor(p) => (11, a(p)),
            Obj::Size(p) => (12, a(p)),
            Obj::Device(p, _) => (13, a(p)),
            _ => return None,
        })
    }
}

/// Why the VM stopped: byte offset in the pickle and reason. Global refusals are `unsupported`.
#[derive(Debug, Clone, PartialEq)]
pub struct PickleError {
    pub offset: u64,
    pub reason: String,
    pub unsupported: bool,
}

type PResult<T> = Result<T, PickleError>;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Global {
    RebuildTensorV2,
    RebuildTensorV3,
    RebuildParameter,
    RebuildParameterWithState,
    RebuildFromTypeV2,
    ParameterType,
    TensorType,
    OrderedDict,
    Storage(DType),
    CodecsEncode,
    TorchSize,
    TorchDevice,
    Set,
    ByteArray,
    Complex,
    Dtype(DType),
}

fn lookup_global(module: &str, name: &str) -> Option<Global> {
    Some(match (module, name) {
        ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
        ("torch._utils", "_rebuild_tensor_v3") => Global::RebuildTensorV3,
        ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
        ("torch._utils", "_rebuild_parameter_with_state") => Global::RebuildParameterWithState,
        ("torch._tensor", "_rebuild_from_type_v2") => Global::RebuildFromTypeV2,
        ("torch.nn.parameter", "Parameter") => Global::ParameterType,
        ("torch", "Tensor") | ("torch._tensor", "Tensor") => Global::TensorType,
        ("collections", "OrderedDict") => Global::OrderedDict,
        ("_codecs", "encode") => Global::CodecsEncode,
        ("torch", "Size") => Global::TorchSize,
        ("torch", "device") => Global::TorchDevice,
        ("builtins", "set") | ("__builtin__", "set") => Global::Set,
        ("builtins", "bytearray") | ("__builtin__", "bytearray") => Global::ByteArray,
        ("builtins", "complex") | ("__builtin__", "complex") => Global::Complex,
        ("torch", n) | ("torch.storage", n) if DType::from_storage_name(n).is_some() => {
            Global::Storage(DType::from_storage_name(n).unwrap())
        }
        ("torch", n) if DType::from_torch_name(n).is_some() => Global::Dtype(DType::from_torch_name(n).unwrap()),
        _ => return None,
    })
}

#[derive(Debug, Clone)]
struct StorageRef {
    key: String,
    dtype: DType,
    numel: u64,
}

/// A key Python's dict would merge with an equal earlier one, for the simple key types
/// (`True == 1`, so bools index as ints). Other keys are not indexed (Python merges them when
/// the glue builds the dict).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum SimpleKey {
    None,
    Int(i64),
    Str(Rc<str>),
}

fn simple_key(v: &Value) -> Option<SimpleKey> {
    match v {
        Value::None => Some(SimpleKey::None),
        Value::Int(i) => Some(SimpleKey::Int(*i)),
        Value::Bool(b) => Some(SimpleKey::Int(*b as i64)),
        Value::Str(s) => Some(SimpleKey::Str(s.clone())),
        _ => None,
    }
}

#[derive(Debug, Default)]
struct DictV {
    ordered: bool,
    items: Vec<(Value, Value)>,
    /// Position in `items` of each simple key: SETITEM replaces in O(1), as a dict does.
    index: HashMap<SimpleKey, usize>,
    attrs: Vec<(Value, Value)>,
}

impl DictV {
    fn new(ordered: bool) -> Self {
        DictV { ordered, ..DictV::default() }
    }
    /// Insert or replace (first key kept, value replaced: Python's dict semantics).
    fn insert(&mut self, k: Value, v: Value) {
        if let Some(sk) = simple_key(&k) {
            if let Some(&i) = self.index.get(&sk) {
                self.items[i].1 = v;
                return;
            }
            self.index.insert(sk, self.items.len());
        }
        self.items.push((k, v));
    }
}

#[derive(Debug, Clone)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    BigInt(Rc<Vec<u8>>),
    Float(f64),
    Complex(f64, f64),
    Str(Rc<str>),
    Bytes(Rc<Vec<u8>>),
    ByteArray(Rc<Vec<u8>>),
    Tuple(Rc<Vec<Value>>),
    List(Rc<RefCell<Vec<Value>>>),
    Dict(Rc<RefCell<DictV>>),
    Set(Rc<RefCell<Vec<Value>>>, bool),
    Global(Global),
    Storage(Rc<StorageRef>),
    Tensor(Rc<TensorSpec>),
    Size(Rc<Vec<i64>>),
    Device(Rc<str>, Option<i64>),
}

/// Move the children out of a container this is the last reference to.
fn take_children(v: &mut Value, out: &mut Vec<Value>) {
    match v {
        Value::Tuple(rc) => {
            if let Some(items) = Rc::get_mut(rc) {
                out.append(items);
            }
        }
        Value::List(rc) | Value::Set(rc, _) => {
            if Rc::strong_count(rc) == 1 {
                if let Ok(mut items) = rc.try_borrow_mut() {
                    out.append(&mut items);
                }
            }
        }
        Value::Dict(rc) => {
            if Rc::strong_count(rc) == 1 {
                if let Ok(mut d) = rc.try_borrow_mut() {
                    d.index.clear();
                    let attrs = std::mem::take(&mut d.attrs);
                    for (k, v) in d.items.drain(..).chain(attrs) {
                        out.push(k);
                        out.push(v);
                    }
                }
            }
        }
        _ => {}
    }
}

/// Iterative destruction: the VM may hold 10^6-deep nestings (it builds them without recursion),
/// and the derived recursive drop would overflow the stack on them. Children of a container
/// dropped for the last time are moved to a work list first, so no drop recurses.
impl Drop for Value {
    fn drop(&mut self) {
        let mut work = Vec::new();
        take_children(self, &mut work);
        while let Some(mut v) = work.pop() {
            take_children(&mut v, &mut work);
        }
    }
}

impl Value {
    fn type_name(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt(_) => "int",
            Value::Float(_) => "float",
            Value::Complex(..) => "complex",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::ByteArray(_) => "bytearray",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Set(..) => "set",
            Value::Global(_) => "global",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
            Value::Size(_) => "torch.Size",
            Value::Device(..) => "torch.device",
        }
    }
    /// Identity of a shared VM value (variant, address), for memoised conversion.
    fn node_id(&self) -> Option<(u8, usize)> {
        fn a<T: ?Sized>(p: &Rc<T>) -> usize {
            Rc::as_ptr(p) as *const u8 as usize
        }
        Some(match self {
            Value::BigInt(p) => (1, a(p)),
            Value::Str(p) => (2, a(p)),
            Value::Bytes(p) => (3, a(p)),
            Value::ByteArray(p) => (4, a(p)),
            Value::Tuple(p) => (5, a(p)),
            Value::List(p) => (6, a(p)),
            Value::Dict(p) => (7, a(p)),
            Value::Set(p, false) => (9, a(p)),
            Value::Set(p, true) => (10, a(p)),
            Value::Tensor(p) => (11, a(p)),
            Value::Size(p) => (12, a(p)),
            Value::Device(p, _) => (13, a(p)),
            _ => return None,
        })
    }
}

struct Vm<'a> {
    data: &'a [u8],
    pos: usize,
    op_pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    limits: Limits,
    /// Values built so far (pushes plus elements copied), against `limits.max_nodes`.
    nodes: usize,
    /// Payload bytes materialised so far, against `limits.max_bytes`.
    bytes: usize,
}

/// Run the VM over a whole pickle and return the object it builds.
pub fn load(data: &[u8], limits: Limits) -> Result<Obj, PickleError> {
    load_prefix(data, limits).map(|(o, _)| o)
}

/// Run the VM up to the first STOP; return the object and the bytes consumed (pickles in sequence).
pub fn load_prefix(data: &[u8], limits: Limits) -> Result<(Obj, usize), PickleError> {
    let mut vm = Vm { data, pos: 0, op_pos: 0, stack: Vec::new(), marks: Vec::new(), memo: HashMap::new(), limits, nodes: 0, bytes: 0 };
    let v = vm.run()?;
    let mut conv = Conv { lim: &limits, nodes: 0, key_work: 0, done: HashMap::new(), active: HashSet::new(), key_cost: HashMap::new() };
    let o = conv.obj(&v, 0).map_err(|reason| PickleError { offset: vm.pos as u64, reason, unsupported: false })?;
    Ok((o, vm.pos))
}

/// Keys (and set items) whose expanded size (tuples inside tuples, counted along every path,
/// which is what Python's hash walks) is above this are refused: hashing them would hang.
const MAX_KEY_NODES: u64 = 1 << 16;

/// VM values → [`Obj`], memoised on node identity: each shared value is converted once and
/// stays shared; cycles and nestings deeper than `max_depth` are refused; the height of every
/// converted node is kept so a shared node reused deeper down still respects the depth limit.
struct Conv<'l> {
    lim: &'l Limits,
    nodes: usize,
    /// Sum of the expanded sizes of every dict key and set item (what building them hashes).
    key_work: u64,
    done: HashMap<(u8, usize), (Obj, usize)>,
    active: HashSet<(u8, usize)>,
    key_cost: HashMap<(u8, usize), Option<u64>>,
}

impl Conv<'_> {
    fn obj(&mut self, v: &Value, depth: usize) -> Result<Obj, String> {
        self.obj_h(v, depth).map(|(o, _)| o)
    }

    /// The converted value and its height (1 for a scalar).
    fn obj_h(&mut self, v: &Value, depth: usize) -> Result<(Obj, usize), String> {
        let too_deep = || format!("object nesting deeper than {} (limit max_depth)", self.lim.max_depth);
        if depth > self.lim.max_depth {
            return Err(too_deep());
        }
        let id = v.node_id();
        if let Some(id) = id {
            if let Some((o, h)) = self.done.get(&id) {
                if depth.saturating_add(*h) > self.lim.max_depth.saturating_add(1) {
                    return Err(too_deep());
                }
                return Ok((o.clone(), *h));
            }
            if !self.active.insert(id) {
                return Err("a container contains itself (self-referencing containers are not supported)".into());
            }
        }
        self.nodes = self.nodes.saturating_add(1);
        if self.nodes > self.lim.max_nodes {
            return Err(format!("object has more than {} nodes (limit max_nodes)", self.lim.max_nodes));
        }
        let r = self.convert(v, depth);
        if let Some(id) = id {
            self.active.remove(&id);
            if let Ok((o, h)) = &r {
                self.done.insert(id, (o.clone(), *h));
            }
        }
        r
    }

    fn seq(&mut self, xs: &[Value], depth: usize, h: &mut usize) -> Result<Vec<Obj>, String> {
        let mut out = Vec::with_capacity(xs.len());
        for x in xs {
            let (o, ch) = self.obj_h(x, depth.saturating_add(1))?;
            *h = (*h).max(ch.saturating_add(1));
            out.push(o);
        }
        Ok(out)
    }

    fn pairs(&mut self, xs: &[(Value, Value)], depth: usize, h: &mut usize, keys: bool) -> Result<Vec<(Obj, Obj)>, String> {
        let mut out = Vec::with_capacity(xs.len());
        for (k, v) in xs {
            let (ko, kh) = self.obj_h(k, depth.saturating_add(1))?;
            if keys {
                self.check_key(&ko, "dict key")?;
            }
            let (vo, vh) = self.obj_h(v, depth.saturating_add(1))?;
            *h = (*h).max(kh.max(vh).saturating_add(1));
            out.push((ko, vo));
        }
        Ok(out)
    }

    /// Refuse what Python could not hash (list, dict, set, bytearray keys; a TypeError in
    /// torch.load) and keys whose hashing would take unbounded time.
    fn check_key(&mut self, k: &Obj, what: &str) -> Result<(), String> {
        match self.cost(k) {
            None => Err(format!("{what} of an unhashable type ({})", obj_type_name(k))),
            Some(c) if c > MAX_KEY_NODES => Err(format!("{what} is a tuple of more than {MAX_KEY_NODES} elements counted along every path")),
            Some(c) => {
                self.key_work = self.key_work.saturating_add(c);
                if self.key_work > self.lim.max_nodes as u64 {
                    return Err(format!("hashing the dict keys and set items would visit more than {} values (limit max_nodes)", self.lim.max_nodes));
                }
                Ok(())
            }
        }
    }

    fn cost(&mut self, k: &Obj) -> Option<u64> {
        match k {
            Obj::List(_) | Obj::Dict(_) | Obj::OrderedDict(_) | Obj::Set(_) | Obj::ByteArray(_) => None,
            Obj::Tuple(t) => {
                let id = k.node_id().unwrap();
                if let Some(c) = self.key_cost.get(&id) {
                    return *c;
                }
                let mut total = 1u64;
                let mut ok = true;
                for x in t.iter() {
                    match self.cost(x) {
                        Some(c) => total = total.saturating_add(c),
                        None => ok = false,
                    }
                }
                let c = if ok { Some(total) } else { None };
                self.key_cost.insert(id, c);
                c
            }
            Obj::Size(s) => Some(1u64.saturating_add(s.len() as u64)),
            _ => Some(1),
        }
    }

    fn convert(&mut self, v: &Value, depth: usize) -> Result<(Obj, usize), String> {
        let mut h = 1usize;
        let o = match v {
            Value::None => Obj::None,
            Value::Bool(b) => Obj::Bool(*b),
            Value::Int(i) => Obj::Int(*i),
            Value::BigInt(b) => Obj::BigInt(Arc::new(b.to_vec())),
            Value::Float(f) => Obj::Float(*f),
            Value::Complex(a, b) => Obj::Complex(*a, *b),
            Value::Str(s) => Obj::Str(Arc::from(&**s)),
            Value::Bytes(b) => Obj::Bytes(Arc::new(b.to_vec())),
            Value::ByteArray(b) => Obj::ByteArray(Arc::new(b.to_vec())),
            Value::Tuple(t) => Obj::Tuple(Arc::new(self.seq(t, depth, &mut h)?)),
            Value::List(l) => Obj::List(Arc::new(self.seq(&l.borrow(), depth, &mut h)?)),
            Value::Set(s, frozen) => {
                let items = self.seq(&s.borrow(), depth, &mut h)?;
                for it in &items {
                    self.check_key(it, "set item")?;
                }
                if *frozen {
                    Obj::FrozenSet(Arc::new(items))
                } else {
                    Obj::Set(Arc::new(items))
                }
            }
            Value::Dict(d) => {
                let d = d.borrow();
                let items = self.pairs(&d.items, depth, &mut h, true)?;
                if d.ordered {
                    let attrs = self.pairs(&d.attrs, depth, &mut h, false)?;
                    Obj::OrderedDict(Arc::new(ODict { items, attrs }))
                } else {
                    Obj::Dict(Arc::new(items))
                }
            }
            Value::Global(g) => match g {
                Global::Dtype(d) => Obj::Dtype(*d),
                other => return Err(format!("a bare global ({other:?}) cannot be returned as data")),
            },
            Value::Storage(_) => return Err("a bare storage cannot be returned as data; only tensors".into()),
            Value::Tensor(t) => Obj::Tensor(Arc::new((**t).clone())),
            Value::Size(s) => Obj::Size(Arc::new(s.to_vec())),
            Value::Device(t, i) => Obj::Device(Arc::from(&**t), *i),
        };
        Ok((o, h))
    }
}

fn obj_type_name(o: &Obj) -> &'static str {
    match o {
        Obj::List(_) => "list",
        Obj::Dict(_) => "dict",
        Obj::OrderedDict(_) => "OrderedDict",
        Obj::Set(_) => "set",
        Obj::ByteArray(_) => "bytearray",
        Obj::Tuple(_) => "tuple containing an unhashable value",
        _ => "value",
    }
}

impl<'a> Vm<'a> {
    fn err<T>(&self, reason: impl Into<String>) -> PResult<T> {
        Err(PickleError { offset: self.op_pos as u64, reason: reason.into(), unsupported: false })
    }
    fn refuse<T>(&self, reason: impl Into<String>) -> PResult<T> {
        Err(PickleError { offset: self.op_pos as u64, reason: reason.into(), unsupported: true })
    }
    fn take(&mut self, n: usize) -> PResult<&'a [u8]> {
        let data: &'a [u8] = self.data;
        let rest = data.get(self.pos..).unwrap_or(&[]);
        match rest.get(..n) {
            Some(s) => {
                self.pos = self.pos.saturating_add(n); // <= data.len()
                Ok(s)
            }
            None => Err(PickleError {
                offset: self.pos as u64,
                reason: format!("pickle truncated: wanted {n} bytes, {} left", rest.len()),
                unsupported: false,
            }),
        }
    }
    fn u8(&mut self) -> PResult<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> PResult<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> PResult<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> PResult<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn line(&mut self) -> PResult<&'a str> {
        let rest = &self.data[self.pos..];
        let n = rest.iter().take(4096).position(|&b| b == b'\n');
        let Some(n) = n else { return self.err("unterminated text argument (no newline within 4096 bytes)") };
        let s = std::str::from_utf8(&rest[..n]).map_err(|_| PickleError {
            offset: self.pos as u64,
            reason: "text argument is not UTF-8".into(),
            unsupported: false,
        })?;
        self.pos = self.pos.saturating_add(n).saturating_add(1); // the newline is in `rest`
        Ok(s)
    }
    fn sized(&mut self, n: u64) -> PResult<&'a [u8]> {
        if n > self.limits.max_str as u64 {
            return self.err(format!("string of {n} bytes exceeds the limit {}", self.limits.max_str));
        }
        let b = self.take(n as usize)?;
        self.count_bytes(b.len())?;
        Ok(b)
    }
    /// Charge `n` materialised payload bytes against `max_bytes`.
    fn count_bytes(&mut self, n: usize) -> PResult<()> {
        self.bytes = self.bytes.saturating_add(n);
        if self.bytes > self.limits.max_bytes {
            return self.err(format!("pickle materialises more than {} bytes of str/bytes/int data (limit max_bytes)", self.limits.max_bytes));
        }
        Ok(())
    }
    /// Charge `n` values built or copied against `max_nodes`.
    fn count_nodes(&mut self, n: usize) -> PResult<()> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > self.limits.max_nodes {
            return self.err(format!("pickle builds more than {} values (limit max_nodes)", self.limits.max_nodes));
        }
        Ok(())
    }
    fn utf8(&self, b: &[u8]) -> PResult<Rc<str>> {
        match std::str::from_utf8(b) {
            Ok(s) => Ok(Rc::from(s)),
            Err(_) => self.err("string is not valid UTF-8"),
        }
    }
    fn push(&mut self, v: Value) -> PResult<()> {
        if self.stack.len() >= self.limits.max_stack {
            return self.err(format!("stack deeper than {}", self.limits.max_stack));
        }
        self.count_nodes(1)?;
        self.stack.push(v);
        Ok(())
    }
    fn pop(&mut self) -> PResult<Value> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return self.err("stack underflow");
        }
        Ok(self.stack.pop().unwrap())
    }
    fn top(&self) -> PResult<&Value> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return self.err("stack underflow");
        }
        Ok(self.stack.last().unwrap())
    }
    fn pop_mark(&mut self) -> PResult<Vec<Value>> {
        let Some(m) = self.marks.pop() else { return self.err("no MARK to pop to") };
        Ok(self.stack.split_off(m))
    }
    fn memo_put(&mut self, idx: u32) -> PResult<()> {
        let v = self.top()?.clone();
        if self.memo.len() >= self.limits.max_memo && !self.memo.contains_key(&idx) {
            return self.err(format!("memo larger than {} entries", self.limits.max_memo));
        }
        self.memo.insert(idx, v);
        Ok(())
    }
    fn memo_get(&mut self, idx: u32) -> PResult<()> {
        match self.memo.get(&idx) {
            Some(v) => {
                let v = v.clone();
                self.push(v)
            }
            None => self.err(format!("memo key {idx} was never stored")),
        }
    }
    fn global(&mut self, module: &str, name: &str) -> PResult<()> {
        match lookup_global(module, name) {
            Some(g) => self.push(Value::Global(g)),
            None => self.refuse(format!(
                "global '{module}.{name}' is not allowed: only tensors, storages, OrderedDict and plain containers/scalars \
                 (the torch.load(weights_only=True) set) are read; nothing is ever imported or called"
            )),
        }
    }

    fn run(&mut self) -> PResult<Value> {
        loop {
            self.op_pos = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    let p = self.u8()?;
                    if p > 5 {
                        return self.err(format!("pickle protocol {p} is not supported (0..=5)"));
                    }
                }
                0x95 => {
                    self.u64()?; // FRAME: length hint only
                }
                b'.' => {
                    let v = self.pop()?;
                    if !self.marks.is_empty() {
                        return self.err("STOP inside an open MARK");
                    }
                    return Ok(v);
                }
                b'(' => {
                    if self.marks.len() >= self.limits.max_depth.saturating_mul(16) {
                        return self.err("too many nested MARKs");
                    }
                    self.marks.push(self.stack.len());
                }
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.push(v)?;
                }
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b'J' => {
                    let v = self.u32()? as i32 as i64;
                    self.push(Value::Int(v))?
                }
                b'K' => {
                    let v = self.u8()? as i64;
                    self.push(Value::Int(v))?
                }
                b'M' => {
                    let v = self.u16()? as i64;
                    self.push(Value::Int(v))?
                }
                b'I' => {
                    let s = self.line()?;
                    let v = match s {
                        "00" => Value::Bool(false),
                        "01" => Value::Bool(true),
                        _ => match s.parse::<i64>() {
                            Ok(i) => Value::Int(i),
                            Err(_) => return self.err(format!("bad INT literal {s:?}")),
                        },
                    };
                    self.push(v)?
                }
                b'L' => {
                    let s = self.line()?.trim_end_matches('L');
                    match s.parse::<i64>() {
                        Ok(i) => self.push(Value::Int(i))?,
                        Err(_) => return self.err(format!("LONG literal {s:?} out of range")),
                    }
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a { self.u8()? as u64 } else { self.u32()? as u64 };
                    let b = self.sized(n)?;
                    let v = if n == 0 {
                        Value::Int(0)
                    } else if n <= 8 {
                        let neg = b.last().is_some_and(|&x| x & 0x80 != 0);
                        let mut buf = if neg { [0xFFu8; 8] } else { [0u8; 8] };
                        buf[..n as usize].copy_from_slice(b);
                        Value::Int(i64::from_le_bytes(buf))
                    } else {
                        Value::BigInt(Rc::new(b.to_vec()))
                    };
                    self.push(v)?
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.take(8)?.try_into().unwrap());
                    self.push(Value::Float(v))?
                }
                b'F' => {
                    let s = self.line()?;
                    match s.parse::<f64>() {
                        Ok(f) => self.push(Value::Float(f))?,
                        Err(_) => return self.err(format!("bad FLOAT literal {s:?}")),
                    }
                }
                b'X' | 0x8c | 0x8d => {
                    let n = match op {
                        b'X' => self.u32()? as u64,
                        0x8c => self.u8()? as u64,
                        _ => self.u64()?,
                    };
                    let b = self.sized(n)?;
                    let s = self.utf8(b)?;
                    self.push(Value::Str(s))?
                }
                b'U' | b'T' => {
                    // Python 2 str: decoded as latin-1 like pickle's default for bytes-free loads.
                    let n = if op == b'U' { self.u8()? as u64 } else { self.u32()? as u64 };
                    let b = self.sized(n)?;
                    let s: String = b.iter().map(|&c| c as char).collect();
                    self.push(Value::Str(Rc::from(s.as_str())))?
                }
                b'B' | b'C' | 0x8e => {
                    let n = match op {
                        b'B' => self.u32()? as u64,
                        b'C' => self.u8()? as u64,
                        _ => self.u64()?,
                    };
                    let b = self.sized(n)?;
                    self.push(Value::Bytes(Rc::new(b.to_vec())))?
                }
                0x96 => {
                    let n = self.u64()?;
                    let b = self.sized(n)?;
                    self.push(Value::ByteArray(Rc::new(b.to_vec())))?
                }
                b')' => self.push(Value::Tuple(Rc::new(Vec::new())))?,
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Value::Tuple(Rc::new(items)))?
                }
                0x85 | 0x86 | 0x87 => {
                    let n = match op {
                        0x85 => 1,
                        0x86 => 2,
                        _ => 3,
                    };
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.push(Value::Tuple(Rc::new(items)))?
                }
                b']' => self.push(Value::List(Rc::new(RefCell::new(Vec::new()))))?,
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Value::List(Rc::new(RefCell::new(items))))?
                }
                b'a' => {
                    let v = self.pop()?;
                    match self.top()? {
                        Value::List(l) => l.borrow_mut().push(v),
                        other => return self.err(format!("APPEND to a {}", other.type_name())),
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    match self.top()? {
                        Value::List(l) => l.borrow_mut().extend(items),
                        other => return self.err(format!("APPENDS to a {}", other.type_name())),
                    }
                }
                b'}' => self.push(Value::Dict(Rc::new(RefCell::new(DictV::new(false)))))?,
                b'd' => {
                    let items = self.pop_mark()?;
                    if items.len() % 2 != 0 {
                        return self.err("DICT with an odd number of items");
                    }
                    let mut d = DictV::new(false);
                    for (k, v) in pairs(items) {
                        d.insert(k, v);
                    }
                    self.push(Value::Dict(Rc::new(RefCell::new(d))))?
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.setitems(vec![(k, v)])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    if items.len() % 2 != 0 {
                        return self.err("SETITEMS with an odd number of items");
                    }
                    self.setitems(pairs(items))?;
                }
                0x8f => self.push(Value::Set(Rc::new(RefCell::new(Vec::new())), false))?,
                0x90 => {
                    let items = self.pop_mark()?;
                    match self.top()? {
                        Value::Set(s, false) => s.borrow_mut().extend(items),
                        other => return self.err(format!("ADDITEMS to a {}", other.type_name())),
                    }
                }
                0x91 => {
                    let items = self.pop_mark()?;
                    self.push(Value::Set(Rc::new(RefCell::new(items)), true))?
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.global(module, name)?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (&module, &name) {
                        (Value::Str(m), Value::Str(n)) => self.global(m, n)?,
                        _ => return self.err("STACK_GLOBAL needs two strings"),
                    }
                }
                b'R' => {
                    let args = self.pop()?;
                    let func = self.pop()?;
                    let Value::Tuple(args) = &args else {
                        return self.err(format!("REDUCE arguments must be a tuple, got {}", args.type_name()));
                    };
                    let Value::Global(g) = &func else {
                        return self.err(format!("REDUCE on a {}, which is not an allowed callable", func.type_name()));
                    };
                    let v = self.reduce(*g, args)?;
                    self.push(v)?
                }
                0x81 => {
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    let Value::Tuple(args) = &args else { return self.err("NEWOBJ arguments must be a tuple") };
                    match &cls {
                        Value::Global(g @ (Global::OrderedDict | Global::Set | Global::TorchSize)) => {
                            let v = self.reduce(*g, args)?;
                            self.push(v)?
                        }
                        other => return self.refuse(format!("NEWOBJ of a {} is not allowed", other.type_name())),
                    }
                }
                b'b' => {
                    let state = self.pop()?;
                    match (self.top()?, &state) {
                        (_, Value::None) => {}
                        (Value::Dict(d), Value::Dict(s)) if d.borrow().ordered => {
                            // OrderedDict.__reduce__ state: instance attributes. torch sets exactly
                            // one, a state_dict's `_metadata` (torch.nn.Module.state_dict); any
                            // other attribute (`__class__`, `__dict__`, ...) is refused.
                            if s.borrow().items.len() > 16 {
                                return self.err("BUILD state of an OrderedDict has more than 16 attributes");
                            }
                            let extra = s.borrow().items.clone();
                            for (k, _) in &extra {
                                match k {
                                    Value::Str(name) if &**name == "_metadata" => {}
                                    Value::Str(name) => {
                                        return self.refuse(format!("BUILD sets attribute {name:?} on an OrderedDict; only '_metadata' (what torch writes) is allowed"))
                                    }
                                    other => return self.err(format!("BUILD state of an OrderedDict must have string keys, got a {}", other.type_name())),
                                }
                            }
                            let mut d = d.borrow_mut();
                            for (k, v) in extra {
                                // Replace an earlier `_metadata` (setattr semantics).
                                d.attrs.retain(|(ek, _)| !matches!((ek, &k), (Value::Str(a), Value::Str(b)) if a == b));
                                d.attrs.push((k, v));
                            }
                        }
                        // Tensor/parameter python attributes (e.g. from _rebuild_from_type_v2): dropped,
                        // as torch drops them for plain tensors.
                        (Value::Tensor(_), _) => {}
                        (obj, st) => {
                            return self.err(format!("BUILD of a {} with a {} state is not allowed", obj.type_name(), st.type_name()))
                        }
                    }
                }
                b'q' => {
                    let i = self.u8()? as u32;
                    self.memo_put(i)?
                }
                b'r' => {
                    let i = self.u32()?;
                    self.memo_put(i)?
                }
                0x94 => {
                    let i = self.memo.len() as u32;
                    self.memo_put(i)?
                }
                b'p' => {
                    let s = self.line()?;
                    let i: u32 = match s.parse() {
                        Ok(i) => i,
                        Err(_) => return self.err(format!("bad PUT index {s:?}")),
                    };
                    self.memo_put(i)?
                }
                b'h' => {
                    let i = self.u8()? as u32;
                    self.memo_get(i)?
                }
                b'j' => {
                    let i = self.u32()?;
                    self.memo_get(i)?
                }
                b'g' => {
                    let s = self.line()?;
                    let i: u32 = match s.parse() {
                        Ok(i) => i,
                        Err(_) => return self.err(format!("bad GET index {s:?}")),
                    };
                    self.memo_get(i)?
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = self.persistent_load(pid)?;
                    self.push(v)?
                }
                other => {
                    return self.refuse(format!("pickle opcode 0x{other:02x} ({:?}) is not allowed", other as char));
                }
            }
        }
    }

    fn setitems(&mut self, items: Vec<(Value, Value)>) -> PResult<()> {
        match self.top()? {
            Value::Dict(d) => {
                let mut d = d.borrow_mut();
                for (k, v) in items {
                    // Replace an existing key like Python's dict would (hash index: linear time).
                    d.insert(k, v);
                }
                Ok(())
            }
            other => self.err(format!("SETITEM(S) on a {}", other.type_name())),
        }
    }

    fn persistent_load(&self, pid: Value) -> PResult<Value> {
        let Value::Tuple(t) = &pid else { return self.err(format!("persistent id must be a tuple, got {}", pid.type_name())) };
        match t.as_slice() {
            [Value::Str(tag), Value::Global(Global::Storage(dtype)), Value::Str(key), Value::Str(_location), numel, rest @ ..]
                if &**tag == "storage" && rest.len() <= 1 =>
            {
                let numel = as_u64(numel).ok_or_else(|| PickleError {
                    offset: self.op_pos as u64,
                    reason: "storage element count must be a non-negative int".into(),
                    unsupported: false,
                })?;
                if !rest.is_empty() && !matches!(rest[0], Value::None) {
                    return self.refuse("legacy storage views (view_metadata) are not supported");
                }
                Ok(Value::Storage(Rc::new(StorageRef { key: key.to_string(), dtype: *dtype, numel })))
            }
            [Value::Str(tag), ..] if &**tag == "storage" => self.err("malformed storage persistent id"),
            _ => self.refuse("only torch storage persistent ids are allowed"),
        }
    }

    fn reduce(&mut self, g: Global, args: &[Value]) -> PResult<Value> {
        match g {
            Global::RebuildTensorV2 | Global::RebuildTensorV3 => {
                // (storage, offset, size, stride, requires_grad, backward_hooks[, dtype (v3)][, metadata])
                let min = if g == Global::RebuildTensorV3 { 7 } else { 6 };
                if args.len() < min || args.len() > min.saturating_add(1) {
                    return self.err(format!("{g:?} takes {min} or {} arguments, got {}", min.saturating_add(1), args.len()));
                }
                let Value::Storage(st) = &args[0] else {
                    return self.err(format!("{g:?}: first argument must be a storage, got {}", args[0].type_name()));
                };
                let offset = self.u64_arg(&args[1], "storage_offset")?;
                let size = self.dims(&args[2], "size")?;
                let stride = self.dims(&args[3], "stride")?;
                if size.len() != stride.len() {
                    return self.err(format!("size has {} dims but stride has {}", size.len(), stride.len()));
                }
                let requires_grad = matches!(args[4], Value::Bool(true));
                let dtype = if g == Global::RebuildTensorV3 {
                    match &args[6] {
                        Value::Global(Global::Dtype(d)) => *d,
                        other => return self.err(format!("_rebuild_tensor_v3: dtype argument is a {}", other.type_name())),
                    }
                } else {
                    st.dtype
                };
                let storage_numel = if g == Global::RebuildTensorV3 && st.dtype != dtype {
                    // Untyped storage: numel counts bytes.
                    st.numel.checked_div(dtype.itemsize() as u64).unwrap_or(0)
                } else {
                    st.numel
                };
                Ok(Value::Tensor(Rc::new(TensorSpec {
                    storage: st.key.clone(),
                    dtype,
                    storage_numel,
                    offset,
                    size,
                    stride,
                    requires_grad,
                    parameter: false,
                })))
            }
            Global::RebuildParameter | Global::RebuildParameterWithState => {
                let Some(Value::Tensor(t)) = args.first() else {
                    return self.err("_rebuild_parameter: first argument must be a tensor");
                };
                let mut t = (**t).clone();
                t.parameter = true;
                t.requires_grad = matches!(args.get(1), Some(Value::Bool(true)));
                Ok(Value::Tensor(Rc::new(t)))
            }
            Global::RebuildFromTypeV2 => {
                // (func, new_type, args, state)
                if args.len() != 4 {
                    return self.err("_rebuild_from_type_v2 takes 4 arguments");
                }
                let Value::Global(f) = &args[0] else { return self.err("_rebuild_from_type_v2: func is not a global") };
                let Value::Tuple(fargs) = &args[2] else { return self.err("_rebuild_from_type_v2: args is not a tuple") };
                if !matches!(f, Global::RebuildTensorV2 | Global::RebuildTensorV3 | Global::RebuildParameter | Global::RebuildParameterWithState) {
                    return self.refuse(format!("_rebuild_from_type_v2 with {f:?} is not allowed"));
                }
                let v = self.reduce(*f, fargs)?;
                match (&args[1], &v) {
                    (Value::Global(Global::TensorType), _) => Ok(v),
                    (Value::Global(Global::ParameterType), Value::Tensor(t)) => {
                        let mut t = (**t).clone();
                        t.parameter = true;
                        Ok(Value::Tensor(Rc::new(t)))
                    }
                    (other, _) => self.refuse(format!("tensor subclass {} is not allowed", other.type_name())),
                }
            }
            Global::OrderedDict => {
                let mut d = DictV::new(true);
                match args {
                    [] => {}
                    [Value::List(l)] => {
                        let l = l.borrow();
                        self.count_nodes(l.len().saturating_mul(2))?;
                        for kv in l.iter() {
                            match kv {
                                Value::Tuple(t) if t.len() == 2 => d.insert(t[0].clone(), t[1].clone()),
                                _ => return self.err("OrderedDict items must be (key, value) pairs"),
                            }
                        }
                    }
                    _ => return self.err("OrderedDict takes no argument or a list of pairs"),
                };
                Ok(Value::Dict(Rc::new(RefCell::new(d))))
            }
            Global::CodecsEncode => match args {
                [Value::Str(s), Value::Str(enc)] if &**enc == "latin1" || &**enc == "latin-1" => {
                    self.count_bytes(s.len())?;
                    let mut out = Vec::with_capacity(s.len());
                    for c in s.chars() {
                        if (c as u32) > 255 {
                            return self.err("_codecs.encode: character outside latin-1");
                        }
                        out.push(c as u32 as u8);
                    }
                    Ok(Value::Bytes(Rc::new(out)))
                }
                _ => self.refuse("_codecs.encode is allowed only as (str, 'latin1') for bytes"),
            },
            Global::TorchSize => match args {
                [Value::Tuple(t)] => {
                    let mut dims = Vec::with_capacity(t.len());
                    for d in t.iter() {
                        match d {
                            Value::Int(i) => dims.push(*i),
                            _ => return self.err("torch.Size entries must be ints"),
                        }
                    }
                    Ok(Value::Size(Rc::new(dims)))
                }
                [] => Ok(Value::Size(Rc::new(Vec::new()))),
                _ => self.err("torch.Size takes one tuple"),
            },
            Global::TorchDevice => match args {
                [Value::Str(s)] => Ok(Value::Device(s.clone(), None)),
                [Value::Str(s), Value::Int(i)] => Ok(Value::Device(s.clone(), Some(*i))),
                _ => self.err("torch.device takes (type[, index])"),
            },
            Global::Set => match args {
                [] => Ok(Value::Set(Rc::new(RefCell::new(Vec::new())), false)),
                [Value::List(l)] => {
                    self.count_nodes(l.borrow().len())?;
                    Ok(Value::Set(Rc::new(RefCell::new(l.borrow().clone())), false))
                }
                _ => self.err("set takes one list"),
            },
            Global::ByteArray => match args {
                [] => Ok(Value::ByteArray(Rc::new(Vec::new()))),
                [Value::Bytes(b)] => Ok(Value::ByteArray(b.clone())),
                _ => self.err("bytearray takes bytes"),
            },
            Global::Complex => match args {
                [a, b] => {
                    let (Some(a), Some(b)) = (as_f64(a), as_f64(b)) else { return self.err("complex takes two numbers") };
                    Ok(Value::Complex(a, b))
                }
                _ => self.err("complex takes two numbers"),
            },
            Global::ParameterType | Global::TensorType | Global::Storage(_) | Global::Dtype(_) => {
                self.refuse(format!("calling {g:?} is not allowed"))
            }
        }
    }

    fn u64_arg(&self, v: &Value, what: &str) -> PResult<u64> {
        as_u64(v).ok_or_else(|| PickleError {
            offset: self.op_pos as u64,
            reason: format!("tensor {what} must be a non-negative int, got {}", v.type_name()),
            unsupported: false,
        })
    }
    fn dims(&self, v: &Value, what: &str) -> PResult<Vec<u64>> {
        let Value::Tuple(t) = v else { return self.err(format!("tensor {what} must be a tuple, got {}", v.type_name())) };
        if t.len() > 64 {
            return self.err(format!("tensor {what} has {} dims (limit 64)", t.len()));
        }
        t.iter().map(|d| self.u64_arg(d, what)).collect()
    }
}

fn pairs(items: Vec<Value>) -> Vec<(Value, Value)> {
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    out
}

fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) if *i >= 0 => Some(*i as u64),
        Value::Bool(b) => Some(*b as u64),
        _ => None,
    }
}

fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
pub(crate) mod tests {
    use super::*;

    /// Build a protocol-2 pickle of `{name: tensor}` the way torch.save does.
    pub fn tensor_dict_pickle(name: &str, storage_class: &str, key: &str, numel: u32, size: &[u32], stride: &[u32], offset: u32) -> Vec<u8> {
        let mut p = vec![0x80, 2, b'}'];
        let s = |p: &mut Vec<u8>, s: &str| {
            p.push(b'X');
            p.extend_from_slice(&(s.len() as u32).to_le_bytes());
            p.extend_from_slice(s.as_bytes());
        };
        let int = |p: &mut Vec<u8>, v: u32| {
            p.push(b'J');
            p.extend_from_slice(&v.to_le_bytes());
        };
        s(&mut p, name);
        p.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n(");
        p.push(b'(');
        s(&mut p, "storage");
        p.extend_from_slice(format!("ctorch\n{storage_class}\n").as_bytes());
        s(&mut p, key);
        s(&mut p, "cpu");
        int(&mut p, numel);
        p.push(b't');
        p.push(b'Q');
        int(&mut p, offset);
        p.push(b'(');
        for d in size {
            int(&mut p, *d);
        }
        p.push(b't');
        p.push(b'(');
        for d in stride {
            int(&mut p, *d);
        }
        p.push(b't');
        p.push(0x89);
        p.extend_from_slice(b"ccollections\nOrderedDict\n)R");
        p.push(b't');
        p.push(b'R');
        p.push(b's');
        p.push(b'.');
        p
    }

    #[test]
    fn reads_a_tensor_dict() {
        let p = tensor_dict_pickle("latents", "BFloat16Storage", "0", 24, &[2, 3, 4], &[12, 4, 1], 0);
        let o = load(&p, Limits::default()).unwrap();
        let Obj::Dict(items) = o else { panic!() };
        assert_eq!(items[0].0, Obj::Str("latents".into()));
        let Obj::Tensor(t) = &items[0].1 else { panic!() };
        assert_eq!(t.dtype, DType::BF16);
        assert_eq!(t.size, vec![2, 3, 4]);
        assert!(t.is_c_contiguous());
        assert_eq!(t.end_element(), Some(24));
    }

    #[test]
    fn transposed_is_not_contiguous() {
        let p = tensor_dict_pickle("x", "FloatStorage", "0", 6, &[3, 2], &[1, 3], 0);
        let Obj::Dict(items) = load(&p, Limits::default()).unwrap() else { panic!() };
        let Obj::Tensor(t) = &items[0].1 else { panic!() };
        assert!(!t.is_c_contiguous());
        assert_eq!(t.end_element(), Some(6));
    }

    #[test]
    fn os_system_is_refused() {
        let p = b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00echot\x85R.";
        let e = load(p, Limits::default()).unwrap_err();
        assert!(e.unsupported);
        assert!(e.reason.contains("os.system"), "{}", e.reason);
        assert_eq!(e.offset, 2);
        // STACK_GLOBAL (protocol 4) too.
        let p = b"\x80\x04\x8c\x02os\x8c\x06system\x93.";
        assert!(load(p, Limits::default()).unwrap_err().reason.contains("os.system"));
    }

    #[test]
    fn scalars_and_containers() {
        // (None, True, -1, 1.5, 'é', b'ab', [1, 2], big int 2**70)
        let p = b"\x80\x02(N\x88J\xff\xff\xff\xffG?\xf8\x00\x00\x00\x00\x00\x00X\x02\x00\x00\x00\xc3\xa9C\x02ab]q\x00(K\x01K\x02e\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x40t.";
        let o = load(p, Limits::default()).unwrap();
        assert_eq!(
            o,
            Obj::Tuple(Arc::new(vec![
                Obj::None,
                Obj::Bool(true),
                Obj::Int(-1),
                Obj::Float(1.5),
                Obj::Str("é".into()),
                Obj::Bytes(Arc::new(b"ab".to_vec())),
                Obj::List(Arc::new(vec![Obj::Int(1), Obj::Int(2)])),
                Obj::BigInt(Arc::new(vec![0, 0, 0, 0, 0, 0, 0, 0, 0x40])),
            ]))
        );
    }

    #[test]
    fn self_reference_hits_the_depth_limit() {
        // l = []; l.append(l)
        let p = b"\x80\x02]q\x00h\x00a.";
        let e = load(p, Limits::default()).unwrap_err();
        assert!(e.reason.contains("contains itself"), "{}", e.reason);
    }

    fn deep_tuples(n: usize) -> Vec<u8> {
        // N, then TUPLE1 n times: ((((None,),),),...) built without recursion, then POP, None.
        let mut p = vec![0x80, 2, b'N'];
        p.extend(std::iter::repeat(0x85u8).take(n));
        p.extend_from_slice(b"0N.");
        p
    }

    #[test]
    fn deep_nesting_is_dropped_without_recursion() {
        // fuzz-pt-2 A1: 2*10^5 levels overflowed the stack in the derived Drop. Run on a thread
        // with a small stack to show the drop does not recurse.
        let p = deep_tuples(1_000_000);
        let r = std::thread::Builder::new().stack_size(256 << 10).spawn(move || load(&p, Limits::default())).unwrap().join().unwrap();
        assert_eq!(r.unwrap(), Obj::None);
        // Returned (not popped), the nesting is refused by the depth limit, naming it.
        let mut p = vec![0x80, 2, b'N'];
        p.extend(std::iter::repeat(0x85u8).take(300_000));
        p.push(b'.');
        let e = std::thread::Builder::new().stack_size(1 << 20).spawn(move || load(&p, Limits::default())).unwrap().join().unwrap().unwrap_err();
        assert!(e.reason.contains("max_depth"), "{}", e.reason);
        // Lists and dicts too (APPEND / SETITEM chains).
        let mut p = vec![0x80, 2];
        p.extend(std::iter::repeat(b']').take(300_000));
        p.extend(std::iter::repeat(b'a').take(299_999));
        p.push(b'.');
        let e = std::thread::Builder::new().stack_size(1 << 20).spawn(move || load(&p, Limits::default())).unwrap().join().unwrap().unwrap_err();
        assert!(e.reason.contains("max_depth"), "{}", e.reason);
    }

    #[test]
    fn the_deepest_allowed_nesting_fits_a_small_stack() {
        // 1000 nested lists (the most set_limits allows) convert on an 8 MiB stack, unoptimised.
        let n = crate::limits::MAX_MAX_DEPTH as usize;
        let mut p = vec![0x80, 2];
        p.extend(std::iter::repeat(b']').take(n));
        p.extend(std::iter::repeat(b'a').take(n - 1));
        p.push(b'.');
        let lim = Limits { max_depth: n, ..Limits::default() };
        let r = std::thread::Builder::new().stack_size(8 << 20).spawn(move || load(&p, lim).map(|o| matches!(o, Obj::List(_)))).unwrap().join().unwrap();
        assert_eq!(r, Ok(true));
    }

    #[test]
    fn shared_references_are_one_node_and_count_once() {
        // fuzz-pt-2 A2: 1 MiB of bytes referenced 20000 times (a 1 MB file) was deep-copied per
        // reference (> 20 GiB). Now it is one node, shared, and the byte budget counts it once.
        let mut p = vec![0x80, 3, b'B'];
        p.extend_from_slice(&(1u32 << 20).to_le_bytes());
        p.extend(std::iter::repeat(b'a').take(1 << 20));
        p.extend_from_slice(&[b'q', 0, b'(']);
        for _ in 0..20_000 {
            p.extend_from_slice(&[b'h', 0]);
        }
        p.extend_from_slice(b"l.");
        let t = std::time::Instant::now();
        let o = load(&p, Limits::default()).unwrap();
        assert!(t.elapsed().as_secs_f64() < 2.0);
        let Obj::List(xs) = &o else { panic!() };
        assert_eq!(xs.len(), 20_000);
        assert!(xs.iter().all(|x| x.node_id() == xs[0].node_id()));
        // The byte budget names its limit.
        let e = load(&p, Limits { max_bytes: 1000, ..Limits::default() }).unwrap_err();
        assert!(e.reason.contains("max_bytes"), "{}", e.reason);
        // The node budget counts every push (references included).
        let e = load(&p, Limits { max_nodes: 10_000, ..Limits::default() }).unwrap_err();
        assert!(e.reason.contains("max_nodes"), "{}", e.reason);
    }

    #[test]
    fn billion_laughs_dag_is_linear() {
        // l0 = [None]*10; l1 = [l0]*10; ... l8: 10^9 leaves in ~300 bytes, 90 values.
        let mut p = vec![0x80, 2, b'N', b'q', 0];
        for level in 0..9u8 {
            p.push(b'(');
            for _ in 0..10 {
                p.extend_from_slice(&[b'h', level]);
            }
            p.extend_from_slice(&[b'l', b'q', level + 1]);
        }
        p.push(b'.');
        let t = std::time::Instant::now();
        let o = load(&p, Limits::default()).unwrap();
        assert!(t.elapsed().as_secs_f64() < 1.0);
        let Obj::List(xs) = &o else { panic!() };
        assert_eq!(xs.len(), 10);
    }

    #[test]
    fn setitem_is_linear_and_keeps_dict_semantics() {
        // fuzz-pt-2 C1: 10^5 distinct int keys took 10 s (a linear scan per SETITEM).
        let n = 200_000u32;
        let mut p = vec![0x80, 2, b'}'];
        for i in 0..n {
            p.push(b'J');
            p.extend_from_slice(&i.to_le_bytes());
            p.extend_from_slice(b"Ns");
        }
        // d[1] = True replaces the value of key 1, d[True] = False too (True == 1 in Python).
        p.extend_from_slice(&[b'K', 1, 0x88, b's', 0x88, 0x89, b's', b'.']);
        let t = std::time::Instant::now();
        let o = load(&p, Limits::default()).unwrap();
        eprintln!("200k SETITEM: {:?}", t.elapsed());
        assert!(t.elapsed().as_secs_f64() < 5.0);
        let Obj::Dict(items) = &o else { panic!() };
        assert_eq!(items.len(), n as usize);
        assert_eq!(items[1], (Obj::Int(1), Obj::Bool(false)));
    }

    #[test]
    fn unhashable_keys_and_foreign_attributes_are_refused() {
        // {[]: 1}: a TypeError in Python.
        let e = load(b"\x80\x02}]K\x01s.", Limits::default()).unwrap_err();
        assert!(e.reason.contains("unhashable"), "{}", e.reason);
        // OrderedDict + BUILD {'__class__': 1}
        let p = b"\x80\x02ccollections\nOrderedDict\n)R}X\x09\x00\x00\x00__class__K\x01sb.";
        let e = load(p, Limits::default()).unwrap_err();
        assert!(e.unsupported && e.reason.contains("__class__"), "{}", e.reason);
        let p = b"\x80\x02ccollections\nOrderedDict\n)R}X\x09\x00\x00\x00_metadataK\x01sb.";
        let Obj::OrderedDict(d) = load(p, Limits::default()).unwrap() else { panic!() };
        assert_eq!(d.attrs.len(), 1);
    }

    #[test]
    fn shared_node_reused_deeper_respects_the_depth_limit() {
        // x = 150-deep tuple nesting (memo 0); y = (((x,),)...) 100 more levels: 250 > 200.
        let mut p = vec![0x80, 2, b'N'];
        p.extend(std::iter::repeat(0x85u8).take(150));
        p.extend_from_slice(&[b'q', 0]);
        p.push(b'0');
        p.extend_from_slice(&[b'(', b'h', 0]);
        p.extend(std::iter::repeat(0x85u8).take(100));
        p.extend_from_slice(&[b'h', 0, b't', b'.']);
        let e = load(&p, Limits::default()).unwrap_err();
        assert!(e.reason.contains("max_depth"), "{}", e.reason);
    }

    #[test]
    fn memo_limit() {
        let mut p = vec![0x80, 2, b'N'];
        for i in 0..100u32 {
            p.push(b'r');
            p.extend_from_slice(&i.to_le_bytes());
        }
        p.push(b'.');
        let lim = Limits { max_memo: 10, ..Limits::default() };
        assert!(load(&p, lim).unwrap_err().reason.contains("memo"));
    }

    #[test]
    fn truncations_and_flips_never_panic() {
        let p = tensor_dict_pickle("latents", "FloatStorage", "0", 24, &[2, 3, 4], &[12, 4, 1], 0);
        for cut in 0..p.len() {
            assert!(load(&p[..cut], Limits::default()).is_err());
        }
        let mut seed = 0x1234_5678_9abc_def0u64;
        for _ in 0..20_000 {
            let mut q = p.clone();
            for _ in 0..3 {
                seed = crate::plan::splitmix64(seed);
                let i = (seed % q.len() as u64) as usize;
                q[i] = (seed >> 32) as u8;
            }
            let _ = load(&q, Limits::default());
        }
    }
}
