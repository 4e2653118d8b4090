//! The restricted pickle machine that reads `data.pkl`. It has Python's value stack,
//! marks and memo, and runs only the opcodes a state dict needs ([`opcodes`]); globals
//! resolve against torch's allow-list and are never called ([`torch`]). What comes out is
//! the tensor table: each key with its storage, offset, shape and strides.
//!
//! Every structure the pickle can grow is capped, and every read is bounds-checked, so a
//! hostile or damaged pickle ends in a [`PthError`], never a panic or an unbounded
//! allocation.

mod opcodes;
mod torch;

use std::collections::HashMap;

use super::{DType, PthError, PthTensor};
use opcodes::{
    APPEND, APPENDS, BINFLOAT, BINGET, BININT, BININT1, BININT2, BINPERSID, BINPUT, BINSTRING,
    BINUNICODE, BINUNICODE8, BUILD, DICT, EMPTY_DICT, EMPTY_LIST, EMPTY_TUPLE, FRAME, GLOBAL, LIST,
    LONG_BINGET, LONG_BINPUT, LONG1, MARK, MEMOIZE, NEWFALSE, NEWOBJ, NEWTRUE, NONE, PROTO, REDUCE,
    SETITEM, SETITEMS, SHORT_BINSTRING, SHORT_BINUNICODE, STACK_GLOBAL, STOP, TUPLE, TUPLE1,
    TUPLE3, opcode_name,
};
use torch::Global;

/// Caps on the VM's data structures so a hostile pickle cannot exhaust memory.
const MAX_OBJECTS: usize = 1 << 22;
const MAX_STACK: usize = 1 << 20;
const MAX_MEMO: usize = 1 << 20;
const MAX_NDIM: usize = 64;
const MAX_GLOBAL_LEN: usize = 256;
/// What the machine may build beyond its arena, per byte of pickle: the tensor views (shape,
/// strides and storage key) and the table handed out. A tensor written by torch spells its
/// shape and strides out inline (two bytes or more a dimension for 16 bytes built), so a real
/// state dict needs about 8; a hostile one that memoizes a 64-dimension tuple, or one tensor,
/// and reuses it under thousands of keys would otherwise build a kilobyte per three bytes.
const BUILT_PER_PICKLE_BYTE: usize = 16;
/// ... plus this much for any pickle, so a tiny state dict is never refused.
const BUILT_FLOOR: usize = 1 << 16;

type Id = usize;

/// Pickle values live in an arena and refer to each other by index. That gives
/// Python's shared-reference semantics (a memoized dict filled in later)
/// without `Rc` cycles, and without recursive drops that a deeply nested
/// hostile pickle could use to overflow the stack.
#[derive(Debug)]
enum Obj {
    None,
    Bool,
    Int(i64),
    Float,
    Str(String),
    Tuple(Vec<Id>),
    List(Vec<Id>),
    Dict(Vec<(Id, Id)>),
    Global(Global),
    /// The two large values are boxed, so that every other one, which a single opcode byte
    /// can create, takes 32 bytes of arena instead of a hundred.
    Storage(Box<Storage>),
    Tensor(Box<PthTensor>),
}

const _: () = assert!(size_of::<Obj>() <= 32, "an opcode byte may build one Obj");

#[derive(Debug)]
struct Storage {
    key: String,
    dtype: DType,
    numel: usize,
}

impl Obj {
    fn kind(&self) -> &'static str {
        match self {
            Obj::None => "None",
            Obj::Bool => "bool",
            Obj::Int(_) => "int",
            Obj::Float => "float",
            Obj::Str(_) => "string",
            Obj::Tuple(_) => "tuple",
            Obj::List(_) => "list",
            Obj::Dict(_) => "dict",
            Obj::Global(_) => "global",
            Obj::Storage(_) => "storage",
            Obj::Tensor(_) => "tensor",
        }
    }
}

#[derive(Default)]
pub(super) struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    op_pos: usize,
    objs: Vec<Obj>,
    stack: Vec<Id>,
    /// Stack heights at each open MARK.
    marks: Vec<usize>,
    memo: HashMap<u32, Id>,
    /// Bytes of tensor views and table entries built so far, against `BUILT_PER_PICKLE_BYTE`.
    built: usize,
}

impl<'a> Machine<'a> {
    pub(super) fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            ..Self::default()
        }
    }

    fn truncated(&self) -> PthError {
        PthError::PickleTruncated { pos: self.op_pos }
    }

    fn invalid(&self, msg: impl Into<String>) -> PthError {
        PthError::PickleInvalid {
            pos: self.op_pos,
            msg: msg.into(),
        }
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], PthError> {
        let data: &'a [u8] = self.data;
        let rest = data.get(self.pos..).unwrap_or_default();
        let n = usize::try_from(n).map_err(|_| self.truncated())?;
        let bytes = rest.get(..n).ok_or_else(|| self.truncated())?;
        self.pos += n;
        Ok(bytes)
    }

    /// A little-endian unsigned integer of `width` (at most 8) bytes.
    fn uint(&mut self, width: u64) -> Result<u64, PthError> {
        let bytes = self.take(width)?;
        Ok(bytes
            .iter()
            .rev()
            .fold(0, |acc, &b| (acc << 8) | u64::from(b)))
    }

    /// BININT/BININT1/BININT2/LONG1: little-endian, optionally two's complement.
    fn int(&mut self, width: u64, signed: bool) -> Result<(), PthError> {
        if width > 8 {
            return Err(self.invalid("LONG1 integer does not fit in 64 bits"));
        }
        let value = self.uint(width)?;
        let unused = 64 - 8 * width as u32;
        let value = match (signed, width) {
            (_, 0) => 0,
            (true, _) => ((value << unused) as i64) >> unused,
            (false, _) => value as i64,
        };
        self.push_new(Obj::Int(value))
    }

    /// Any string opcode whose length prefix is `width` bytes. A negative
    /// BINSTRING length reads as a huge one and so reports truncation.
    fn string(&mut self, width: u64) -> Result<(), PthError> {
        let len = self.uint(width)?;
        let bytes = self.take(len)?;
        let s = std::str::from_utf8(bytes).map_err(|_| self.invalid("string is not UTF-8"))?;
        self.push_new(Obj::Str(s.to_owned()))
    }

    /// One newline-terminated line of a GLOBAL opcode.
    fn line(&mut self) -> Result<&'a str, PthError> {
        let data: &'a [u8] = self.data;
        let rest = data.get(self.pos..).unwrap_or_default();
        let window = rest.get(..=MAX_GLOBAL_LEN).unwrap_or(rest);
        let Some(n) = window.iter().position(|&b| b == b'\n') else {
            return Err(match window.len() == rest.len() {
                true => self.truncated(),
                false => self.invalid("GLOBAL name is longer than 256 bytes"),
            });
        };
        self.pos += n + 1;
        let line = window.get(..n).unwrap_or_default();
        std::str::from_utf8(line).map_err(|_| self.invalid("GLOBAL name is not UTF-8"))
    }

    /// Counts `bytes` more of views or table built, refusing what the pickle's length cannot
    /// justify.
    fn charge(&mut self, bytes: usize) -> Result<(), PthError> {
        self.built = self.built.saturating_add(bytes);
        self.within_budget(self.built)
    }

    fn within_budget(&self, built: usize) -> Result<(), PthError> {
        let budget = self.data.len().saturating_mul(BUILT_PER_PICKLE_BYTE) + BUILT_FLOOR;
        if built <= budget {
            return Ok(());
        }
        let msg = format!(
            "its {} bytes build over {budget} bytes of tensor views \
             (memoized shapes or tensors reused under many keys)",
            self.data.len()
        );
        Err(self.invalid(msg))
    }

    fn push(&mut self, id: Id) -> Result<(), PthError> {
        if self.stack.len() >= MAX_STACK {
            return Err(self.invalid(format!("the stack grows beyond {MAX_STACK} entries")));
        }
        self.stack.push(id);
        Ok(())
    }

    fn alloc(&mut self, obj: Obj) -> Result<Id, PthError> {
        if self.objs.len() >= MAX_OBJECTS {
            return Err(self.invalid(format!("the pickle builds over {MAX_OBJECTS} objects")));
        }
        self.objs.push(obj);
        Ok(self.objs.len() - 1)
    }

    fn push_new(&mut self, obj: Obj) -> Result<(), PthError> {
        let id = self.alloc(obj)?;
        self.push(id)
    }

    fn obj(&self, id: Id) -> &Obj {
        // Ids only come from `alloc`, so they are always in range.
        &self.objs[id]
    }

    /// Values below the innermost MARK belong to the enclosing level, as in CPython.
    fn floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    /// Pops `n` values, or everything down to the innermost MARK when `n` is None.
    fn pop_n(&mut self, n: Option<usize>) -> Result<Vec<Id>, PthError> {
        let from = match n {
            Some(n) => self
                .stack
                .len()
                .checked_sub(n)
                .filter(|&f| f >= self.floor()),
            None => self.marks.pop().filter(|&m| m <= self.stack.len()),
        };
        let from = from.ok_or_else(|| self.invalid("stack underflow (or a missing MARK)"))?;
        Ok(self.stack.split_off(from))
    }

    fn pop(&mut self) -> Result<Id, PthError> {
        Ok(self.pop_n(Some(1))?.first().copied().unwrap_or_default())
    }

    fn peek(&self) -> Result<Id, PthError> {
        match self.stack.last() {
            Some(&id) if self.stack.len() > self.floor() => Ok(id),
            _ => Err(self.invalid("stack underflow")),
        }
    }

    /// BINPUT/LONG_BINPUT read a slot number of `width` bytes; MEMOIZE (None) takes the next.
    fn memo_put(&mut self, width: Option<u64>) -> Result<(), PthError> {
        let slot = match width {
            Some(width) => self.uint(width)? as u32,
            None => u32::try_from(self.memo.len()).unwrap_or(u32::MAX),
        };
        let id = self.peek()?;
        if self.memo.len() >= MAX_MEMO && !self.memo.contains_key(&slot) {
            return Err(self.invalid(format!("the memo grows beyond {MAX_MEMO} entries")));
        }
        self.memo.insert(slot, id);
        Ok(())
    }

    fn memo_get(&mut self, width: u64) -> Result<(), PthError> {
        let slot = self.uint(width)?;
        let id = self.memo.get(&(slot as u32)).copied();
        let id = id.ok_or_else(|| self.invalid(format!("memo slot {slot} is read before set")))?;
        self.push(id)
    }

    fn str_of(&self, id: Id, what: &str) -> Result<&str, PthError> {
        match self.obj(id) {
            Obj::Str(s) => Ok(s),
            other => Err(self.invalid(format!("{what} is a {}, not a string", other.kind()))),
        }
    }

    fn usize_of(&self, id: Id, what: &str) -> Result<usize, PthError> {
        match self.obj(id) {
            Obj::Int(i) => usize::try_from(*i).map_err(|_| self.invalid(format!("{what} is {i}"))),
            other => Err(self.invalid(format!("{what} is a {}, not an int", other.kind()))),
        }
    }

    fn dims(&self, id: Id, what: &str) -> Result<Vec<usize>, PthError> {
        match self.obj(id) {
            Obj::Tuple(items) if items.len() <= MAX_NDIM => {
                items.iter().map(|&i| self.usize_of(i, what)).collect()
            }
            other => Err(self.invalid(format!("tensor {what} is a {} of rank > 64", other.kind()))),
        }
    }
    /// SETITEM(S), APPEND(S), BUILD: mutate the container just below the popped values.
    fn update(&mut self, op: u8, items: Vec<Id>) -> Result<(), PthError> {
        let target = self.peek()?;
        let (pairs, _) = items.as_chunks::<2>();
        let state_kind = items.first().map(|&s| self.obj(s).kind());
        match (op, &mut self.objs[target]) {
            (SETITEM | SETITEMS, Obj::Dict(dict)) if items.len().is_multiple_of(2) => {
                dict.extend(pairs.iter().map(|&[k, v]| (k, v)));
            }
            (APPEND | APPENDS, Obj::List(list)) => list.extend(items),
            // torch sets the state dict's `_metadata` attribute this way; it only
            // matters to `load_state_dict` versioning, so the state is ignored.
            (BUILD, Obj::Dict(_)) if matches!(state_kind, Some("dict" | "None")) => {}
            (_, target) => {
                let (op, target, n) = (op as char, target.kind(), items.len());
                let what = format!("opcode '{op}' cannot apply {n} value(s) to a {target}");
                return Err(self.invalid(what));
            }
        }
        Ok(())
    }

    pub(super) fn run(mut self) -> Result<Vec<(String, PthTensor)>, PthError> {
        loop {
            self.op_pos = self.pos;
            let op = self.uint(1)? as u8;
            match op {
                PROTO => {
                    let version = self.uint(1)?;
                    if version > 5 {
                        return Err(self.invalid(format!("pickle protocol {version} is unknown")));
                    }
                }
                // FRAME only announces how many bytes the next opcodes take.
                FRAME => {
                    self.take(8)?;
                }
                STOP => return self.finish(),
                MARK => {
                    if self.marks.len() >= MAX_STACK {
                        return Err(self.invalid("too many open MARKs"));
                    }
                    self.marks.push(self.stack.len());
                }
                EMPTY_DICT => self.push_new(Obj::Dict(Vec::new()))?,
                EMPTY_TUPLE => self.push_new(Obj::Tuple(Vec::new()))?,
                EMPTY_LIST => self.push_new(Obj::List(Vec::new()))?,
                TUPLE | TUPLE1..=TUPLE3 => {
                    // TUPLE1, TUPLE2 and TUPLE3 are consecutive and take 1, 2 and 3 values.
                    let n = (op != TUPLE).then(|| usize::from(op - TUPLE1) + 1);
                    let items = self.pop_n(n)?;
                    self.push_new(Obj::Tuple(items))?;
                }
                DICT => {
                    let items = self.pop_n(None)?;
                    self.push_new(Obj::Dict(Vec::new()))?;
                    self.update(SETITEM, items)?;
                }
                LIST => {
                    let items = self.pop_n(None)?;
                    self.push_new(Obj::List(items))?;
                }
                BINUNICODE | BINSTRING => self.string(4)?,
                SHORT_BINUNICODE | SHORT_BINSTRING => self.string(1)?,
                BINUNICODE8 => self.string(8)?,
                BININT => self.int(4, true)?,
                BININT1 => self.int(1, false)?,
                BININT2 => self.int(2, false)?,
                LONG1 => {
                    let width = self.uint(1)?;
                    self.int(width, true)?;
                }
                BINFLOAT => {
                    self.take(8)?;
                    self.push_new(Obj::Float)?;
                }
                NONE => self.push_new(Obj::None)?,
                NEWTRUE | NEWFALSE => self.push_new(Obj::Bool)?,
                BINPUT => self.memo_put(Some(1))?,
                LONG_BINPUT => self.memo_put(Some(4))?,
                MEMOIZE => self.memo_put(None)?,
                BINGET => self.memo_get(1)?,
                LONG_BINGET => self.memo_get(4)?,
                GLOBAL => {
                    let (module, name) = (self.line()?, self.line()?);
                    self.global(module, name)?;
                }
                STACK_GLOBAL => {
                    let (name, module) = (self.pop()?, self.pop()?);
                    let module = self.str_of(module, "module")?.to_owned();
                    let name = self.str_of(name, "name")?.to_owned();
                    self.global(&module, &name)?;
                }
                BINPERSID => self.persistent_load()?,
                REDUCE | NEWOBJ => self.reduce(op == NEWOBJ)?,
                SETITEM | APPEND | BUILD => {
                    let items = self.pop_n(Some(if op == SETITEM { 2 } else { 1 }))?;
                    self.update(op, items)?;
                }
                SETITEMS | APPENDS => {
                    let items = self.pop_n(None)?;
                    self.update(op, items)?;
                }
                _ => {
                    let (pos, name) = (self.op_pos, opcode_name(op));
                    return Err(PthError::UnsupportedOpcode { pos, op, name });
                }
            }
        }
    }

    /// STOP: the result must be a dict of string -> tensor. A repeated key
    /// replaces the earlier value in place, as a Python dict does.
    fn finish(mut self) -> Result<Vec<(String, PthTensor)>, PthError> {
        let root = self.pop()?;
        let items = match std::mem::replace(&mut self.objs[root], Obj::None) {
            Obj::Dict(items) => items,
            other => {
                return Err(PthError::NotADict {
                    found: other.kind(),
                });
            }
        };
        let mut out: Vec<(String, PthTensor)> = Vec::with_capacity(items.len());
        let mut seen: HashMap<&str, usize> = HashMap::new();
        let mut built = self.built;
        for (k, v) in items {
            let Obj::Str(key) = self.obj(k) else {
                return Err(PthError::KeyNotString {
                    found: self.obj(k).kind(),
                });
            };
            let Obj::Tensor(tensor) = self.obj(v) else {
                let found = self.obj(v).kind();
                return Err(PthError::NotATensor {
                    key: key.clone(),
                    found,
                });
            };
            let size = tensor.built_size();
            match seen.get(key.as_str()).and_then(|&i| out.get_mut(i)) {
                Some(slot) => slot.1 = PthTensor::clone(tensor),
                None => {
                    built = built.saturating_add(size + key.len());
                    self.within_budget(built)?;
                    seen.insert(key, out.len());
                    out.push((key.clone(), PthTensor::clone(tensor)));
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use crate::weights::pth::PthError;
    use crate::weights::pth::testing::{le, pickle_err, with_storage};
    use crate::weights::pth::write::Pickle as P;

    #[test]
    fn rejects_truncated_pickles_at_every_length() {
        let full = P::new()
            .odict()
            .s("w")
            .tensor("FloatStorage", "0", 4, (0, &[4], &[1]))
            .op(b"s")
            .done();
        for len in 0..full.len() {
            let err = pickle_err(&full[..len]);
            assert!(
                matches!(err, PthError::PickleTruncated { .. }),
                "{len}: {err}"
            );
        }
        // A string header claiming 4 GiB must report truncation, not allocate.
        let lying = P::new().op(b"X\xff\xff\xff\xff").bytes();
        assert!(matches!(
            pickle_err(&lying),
            PthError::PickleTruncated { pos: 2 }
        ));
    }

    #[test]
    fn rejects_values_that_are_not_tensors() {
        let err = pickle_err(&P::new().odict().s("step").int(3).op(b"s").done());
        assert!(matches!(&err, PthError::NotATensor { key, found: "int" } if key == "step"));
        let nested = P::new()
            .odict()
            .s("optimizer")
            .op(b"}")
            .s("lr")
            .int(1)
            .op(b"ss")
            .done();
        let msg = "state-dict entry 'optimizer' is a dict, not a tensor";
        assert_eq!(pickle_err(&nested).to_string(), msg);
        let err = pickle_err(&P::new().op(b"]").done());
        assert!(matches!(err, PthError::NotADict { found: "list" }), "{err}");
        let int_key = P::new()
            .odict()
            .int(1)
            .tensor("FloatStorage", "0", 1, (0, &[], &[]))
            .op(b"s");
        let err = pickle_err(&int_key.done());
        assert!(
            matches!(err, PthError::KeyNotString { found: "int" }),
            "{err}"
        );
    }
    /// One tensor with a 64-dimension view, memoized, then reused under many keys: a kilobyte
    /// of table for every 8 bytes of pickle, which the budget refuses; 60 keys still load.
    #[test]
    fn a_tensor_reused_under_many_keys_is_refused() {
        let ones = [1; 64];
        let reused = |keys: usize| {
            let first = P::new()
                .odict()
                .op(b"(")
                .s("k0")
                .tensor("FloatStorage", "0", 1, (0, &ones, &ones))
                .op(b"q\x01");
            let rest = (1..keys).fold(first, |p, i| p.s(&format!("k{i}")).op(b"h\x01"));
            rest.op(b"u").done()
        };
        let f = with_storage(&reused(60), &[0; 4]).unwrap();
        assert_eq!(f.keys().count(), 60);
        let err = with_storage(&reused(2000), &[0; 4]).unwrap_err();
        assert!(err.to_string().contains("tensor views"), "{err}");
    }

    /// The argument tuple of `_rebuild_tensor_v2` (a 64-dimension view) memoized and called
    /// again and again: each call builds a new view from 3 bytes of pickle.
    #[test]
    fn a_view_rebuilt_from_memoized_arguments_is_refused() {
        let ones = [1; 64];
        let tensor = P::new()
            .tensor("FloatStorage", "0", 1, (0, &ones, &ones))
            .bytes();
        // The tensor's opcodes without the protocol header, with its REDUCE ('R') at the end:
        // memoize the global (slot 1) and the arguments (slot 2) just before it.
        let body = &tensor[2..tensor.len() - 1];
        let global_end = body.iter().position(|&b| b == b'(').unwrap();
        let (global, args) = body.split_at(global_end);
        let calls = |n: usize| {
            // {'views': [tensor, tensor, ...]}: a list is no tensor, so even a small one is
            // refused at the end, but only after every view was built.
            let mut p = P::new()
                .odict()
                .s("views")
                .op(b"](")
                .op(global)
                .op(b"q\x01")
                .op(args)
                .op(b"q\x02R");
            for _ in 0..n {
                p = p.op(b"h\x01h\x02R");
            }
            p.op(b"es").done()
        };
        let small = with_storage(&calls(10), &[0; 4]).unwrap_err();
        assert!(matches!(small, PthError::NotATensor { .. }), "{small}");
        let err = with_storage(&calls(5000), &[0; 4]).unwrap_err();
        assert!(err.to_string().contains("tensor views"), "{err}");
    }

    #[test]
    fn mutated_pickles_never_panic() {
        let base = P::new()
            .odict()
            .op(b"q\x00(")
            .s("w")
            .tensor("FloatStorage", "0", 4, (0, &[2, 2], &[1, 2]))
            .op(b"u}b")
            .done();
        let storage = le([0.0f32, 1.0, 2.0, 3.0].map(f32::to_le_bytes));
        let f = with_storage(&base, &storage).unwrap();
        assert_eq!(f.read_f32("w").unwrap(), [0.0, 2.0, 1.0, 3.0]);
        // Deterministic xorshift mutations: every outcome must be Ok or Err.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..3000 {
            let mut bytes = base.clone();
            for _ in 0..3 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let i = (state % bytes.len() as u64) as usize;
                bytes[i] = (state >> 32) as u8;
            }
            if let Ok(f) = with_storage(&bytes, &storage) {
                for key in f.keys() {
                    let _ = (f.read_f32(key), f.read_i64(key));
                }
            }
        }
    }
}
