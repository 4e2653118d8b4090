//! Names for the pickle opcodes (as CPython's `pickletools` spells them), so the machine
//! matches on `MARK` rather than `b'('`. Only the opcodes the machine runs get a constant;
//! the ones it refuses are named in [`REFUSED_OPCODES`], for the error message alone.

// Protocol 0 and 1: one ASCII byte each.
/// Push a mark: the start of a variable-length run of stack values.
pub(super) const MARK: u8 = b'(';
/// End of the pickle: the top of the stack is the result.
pub(super) const STOP: u8 = b'.';
/// A float as 8 big-endian bytes.
pub(super) const BINFLOAT: u8 = b'G';
/// A signed 4-byte integer.
pub(super) const BININT: u8 = b'J';
/// An unsigned 1-byte integer.
pub(super) const BININT1: u8 = b'K';
/// An unsigned 2-byte integer.
pub(super) const BININT2: u8 = b'M';
/// Push None.
pub(super) const NONE: u8 = b'N';
/// Resolve the persistent id on the stack (torch's storage reference).
pub(super) const BINPERSID: u8 = b'Q';
/// Call a callable with an argument tuple.
pub(super) const REDUCE: u8 = b'R';
/// A string with a 4-byte length.
pub(super) const BINSTRING: u8 = b'T';
/// A string with a 1-byte length.
pub(super) const SHORT_BINSTRING: u8 = b'U';
/// A UTF-8 string with a 4-byte length.
pub(super) const BINUNICODE: u8 = b'X';
/// Append one value to a list.
pub(super) const APPEND: u8 = b'a';
/// Set an object's state (`__setstate__`).
pub(super) const BUILD: u8 = b'b';
/// Push a global named by two newline-terminated lines, module then name.
pub(super) const GLOBAL: u8 = b'c';
/// Build a dict from the key/value pairs above the mark.
pub(super) const DICT: u8 = b'd';
/// Append the values above the mark to a list.
pub(super) const APPENDS: u8 = b'e';
/// Push a memo entry, 1-byte slot.
pub(super) const BINGET: u8 = b'h';
/// Push a memo entry, 4-byte slot.
pub(super) const LONG_BINGET: u8 = b'j';
/// Build a list from the values above the mark.
pub(super) const LIST: u8 = b'l';
/// Store the top of the stack in the memo, 1-byte slot.
pub(super) const BINPUT: u8 = b'q';
/// Store the top of the stack in the memo, 4-byte slot.
pub(super) const LONG_BINPUT: u8 = b'r';
/// Set one key/value pair in a dict.
pub(super) const SETITEM: u8 = b's';
/// Build a tuple from the values above the mark.
pub(super) const TUPLE: u8 = b't';
/// Set the key/value pairs above the mark in a dict.
pub(super) const SETITEMS: u8 = b'u';
/// Push an empty dict.
pub(super) const EMPTY_DICT: u8 = b'}';
/// Push an empty tuple.
pub(super) const EMPTY_TUPLE: u8 = b')';
/// Push an empty list.
pub(super) const EMPTY_LIST: u8 = b']';

// Protocol 2.
/// The protocol version, first in the stream.
pub(super) const PROTO: u8 = 0x80;
/// `cls.__new__(cls, *args)`.
pub(super) const NEWOBJ: u8 = 0x81;
/// A tuple of the top 1 value; `TUPLE2` and `TUPLE3` follow it.
pub(super) const TUPLE1: u8 = 0x85;
/// A tuple of the top 3 values.
pub(super) const TUPLE3: u8 = 0x87;
/// Push True.
pub(super) const NEWTRUE: u8 = 0x88;
/// Push False.
pub(super) const NEWFALSE: u8 = 0x89;
/// A little-endian two's-complement integer with a 1-byte length.
pub(super) const LONG1: u8 = 0x8a;

// Protocol 4.
/// A UTF-8 string with a 1-byte length.
pub(super) const SHORT_BINUNICODE: u8 = 0x8c;
/// A UTF-8 string with an 8-byte length.
pub(super) const BINUNICODE8: u8 = 0x8d;
/// Push a global named by the two strings on the stack, module then name.
pub(super) const STACK_GLOBAL: u8 = 0x93;
/// Store the top of the stack in the next memo slot.
pub(super) const MEMOIZE: u8 = 0x94;
/// The length of the frame that follows (a hint for buffering).
pub(super) const FRAME: u8 = 0x95;

/// Names for the opcodes this reader refuses, so the error says what was met.
#[rustfmt::skip]
const REFUSED_OPCODES: &[(u8, &str)] = &[
    (b'0', "POP"), (b'1', "POP_MARK"), (b'2', "DUP"), (b'F', "FLOAT"), (b'I', "INT"),
    (b'L', "LONG"), (b'P', "PERSID"), (b'S', "STRING"), (b'V', "UNICODE"), (b'g', "GET"),
    (b'i', "INST"), (b'o', "OBJ"), (b'p', "PUT"), (b'B', "BINBYTES"), (b'C', "SHORT_BINBYTES"),
    (0x82, "EXT1"), (0x83, "EXT2"), (0x84, "EXT4"), (0x8b, "LONG4"), (0x8e, "BINBYTES8"),
    (0x8f, "EMPTY_SET"), (0x90, "ADDITEMS"), (0x91, "FROZENSET"), (0x92, "NEWOBJ_EX"),
    (0x96, "BYTEARRAY8"), (0x97, "NEXT_BUFFER"), (0x98, "READONLY_BUFFER"),
];

pub(super) fn opcode_name(op: u8) -> &'static str {
    REFUSED_OPCODES
        .iter()
        .find(|(o, _)| *o == op)
        .map_or("not a pickle opcode", |(_, n)| n)
}

#[cfg(test)]
mod tests {
    use crate::weights::pth::PthError;
    use crate::weights::pth::testing::pickle_err;
    use crate::weights::pth::write::Pickle as P;

    #[test]
    fn rejects_unsupported_opcodes() {
        let err = pickle_err(&P::new().odict().op(b"(i__main__\nX\n").done());
        let msg = "unsupported pickle opcode 0x69 ('INST') at byte 30 of data.pkl";
        assert_eq!(err.to_string(), msg);
        let err = pickle_err(&P::new().odict().op(b"0").done());
        assert!(matches!(
            err,
            PthError::UnsupportedOpcode {
                op: b'0',
                name: "POP",
                ..
            }
        ));
    }
}
