"""A pickle reader that understands exactly one thing: a list of floats.

This is a security boundary. `pickle.load` runs whatever code a pickle names (REDUCE on any
global), so the Odlyzko table and `.sobj` imports never go through it. Instead this module
walks the opcode stream itself and accepts only the opcodes a binary pickler (protocol 1-5)
emits for a flat list of Python floats:

    PROTO, FRAME, EMPTY_LIST, MARK, BINFLOAT, APPEND, APPENDS, BINPUT, LONG_BINPUT, MEMOIZE, STOP

Every other opcode (GLOBAL, STACK_GLOBAL, REDUCE, BUILD, INST, OBJ, NEWOBJ, EXT*, PERSID, ints,
strings, dicts, ...) is refused by name and byte offset before anything after it is read.
Nothing is ever imported, called or constructed. Runs of BINFLOAT are decoded with numpy, so
the 2,001,052-float Odlyzko table parses in a fraction of a second.
"""

from __future__ import annotations

import zlib

import numpy as np

from trainer.errors import UnsafePickleError

_PROTO = 0x80
_FRAME = 0x95
_EMPTY_LIST = ord("]")
_MARK = ord("(")
_BINFLOAT = ord("G")
_APPEND = ord("a")
_APPENDS = ord("e")
_BINPUT = ord("q")
_LONG_BINPUT = ord("r")
_MEMOIZE = 0x94
_STOP = ord(".")

_BINFLOAT_SIZE = 9  # opcode byte + 8-byte big-endian IEEE double
_RUN_PROBE = 4096  # floats inspected per numpy probe while measuring a run of BINFLOATs


def _opcode_name(code: int) -> str:
    import pickletools

    for op in pickletools.opcodes:
        if op.code.encode("latin-1") == bytes([code]):
            return op.name
    return f"unknown opcode 0x{code:02x}"


def _float_run(buf: np.ndarray, pos: int) -> int:
    """Number of consecutive BINFLOAT records starting at byte offset pos."""
    count = 0
    while True:
        start = pos + count * _BINFLOAT_SIZE
        avail = (buf.size - start) // _BINFLOAT_SIZE
        probe = min(_RUN_PROBE, avail)
        if probe <= 0:
            return count
        heads = buf[start : start + probe * _BINFLOAT_SIZE : _BINFLOAT_SIZE]
        bad = np.flatnonzero(heads != _BINFLOAT)
        if bad.size:
            return count + int(bad[0])
        count += probe


def loads_float_list(data: bytes, *, source: str = "<bytes>") -> np.ndarray:
    """Decode a pickle that holds a flat list of floats, refusing anything else.

    Args:
        data: the uncompressed pickle bytes.
        source: name of the file the bytes came from, used in error messages.

    Returns:
        float64 ndarray with the list's values, in order.

    Raises:
        UnsafePickleError: on any opcode outside the list-of-floats subset, on a top-level
            object that is not a list, on a truncated stream or on trailing garbage.
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    n = buf.size
    pos = 0
    top: list[np.ndarray] | None = None  # the one list, as decoded chunks
    pending: list[np.ndarray] = []  # floats pushed since the last MARK (or loose on the stack)
    marked = False
    stack_has_list = False

    def fail(msg: str, at: int) -> UnsafePickleError:
        return UnsafePickleError(f"{source}: {msg} at byte {at}; only a pickled list of floats is accepted")

    while pos < n:
        code = int(buf[pos])
        at = pos
        pos += 1
        if code == _PROTO:
            if pos >= n:
                raise fail("truncated PROTO", at)
            pos += 1
        elif code == _FRAME:
            pos += 8  # frames only group bytes; the opcodes inside are checked one by one
        elif code == _EMPTY_LIST:
            if stack_has_list:
                raise fail("a second list (nested or sibling) is not a flat list of floats", at)
            top, stack_has_list = [], True
        elif code == _MARK:
            if not stack_has_list or marked or pending:
                raise fail("MARK outside a list", at)
            marked = True
        elif code == _BINFLOAT:
            if not stack_has_list:
                raise fail("a float outside a list", at)
            run = _float_run(buf, at)
            if run == 0:  # an opcode byte without its 8 data bytes
                raise fail("truncated BINFLOAT", at)
            end = at + run * _BINFLOAT_SIZE
            records = buf[at:end].reshape(run, _BINFLOAT_SIZE)[:, 1:]
            pending.append(np.ascontiguousarray(records).view(">f8").ravel().astype(np.float64))
            pos = end
            if not marked and sum(p.size for p in pending) > 1:
                raise fail("more than one float outside MARK ... APPENDS", at)
        elif code == _APPENDS:
            if not marked:
                raise fail("APPENDS without MARK", at)
            top.extend(pending)
            pending, marked = [], False
        elif code == _APPEND:
            if marked or sum(p.size for p in pending) != 1:
                raise fail("APPEND without exactly one float", at)
            top.extend(pending)
            pending = []
        elif code == _BINPUT:
            pos += 1
        elif code == _LONG_BINPUT:
            pos += 4
        elif code == _MEMOIZE:
            pass
        elif code == _STOP:
            if not stack_has_list or marked or pending:
                raise fail("STOP before a complete list", at)
            if pos != n:
                raise fail(f"{n - pos} bytes after STOP", pos)
            return np.concatenate(top) if top else np.empty(0, dtype=np.float64)
        else:
            raise fail(f"refused opcode {_opcode_name(code)}", at)
        if pos > n:
            raise fail("truncated opcode argument", at)
    raise fail("no STOP (truncated pickle)", n)


def load_sobj(data: bytes, *, source: str) -> np.ndarray:
    """Decode a Sage `.sobj` file (zlib-compressed pickle) holding a list of floats.

    Args:
        data: the file's bytes. Uncompressed pickles (starting with PROTO) are accepted too.
        source: file name for error messages.

    Raises:
        UnsafePickleError: as loads_float_list, or if the bytes are neither zlib nor a pickle.
    """
    if data[:1] != bytes([_PROTO]):
        try:
            data = zlib.decompress(data)
        except zlib.error as e:
            raise UnsafePickleError(f"{source}: not a zlib-compressed pickle ({e})") from e
    return loads_float_list(data, source=source)
