"""The safe list-of-floats pickle reader: benign pickles load, malicious ones never run."""

from __future__ import annotations

import os
import pickle
import struct
import zlib

import numpy as np
import pytest
from trainer.data.safe_pickle import load_sobj, loads_float_list
from trainer.errors import UnsafePickleError


@pytest.mark.parametrize("protocol", [1, 2, 3, 4, 5])
@pytest.mark.parametrize(
    "values", [[], [1.5], [14.134725141734695, 21.022039638771556], list(np.linspace(1, 2, 2500))]
)
def test_benign_lists_round_trip(protocol, values):
    got = loads_float_list(pickle.dumps([float(v) for v in values], protocol=protocol))
    assert got.dtype == np.float64
    assert got.tolist() == [float(v) for v in values]


def test_sobj_is_zlib_compressed():
    values = [float(v) for v in np.random.default_rng(0).uniform(0, 1e6, 3001)]
    got = load_sobj(zlib.compress(pickle.dumps(values, protocol=2)), source="x.sobj")
    assert got.tolist() == values


def test_sobj_garbage_names_the_file():
    with pytest.raises(UnsafePickleError, match=r"^bad\.sobj: not a zlib-compressed pickle"):
        load_sobj(b"not a pickle at all", source="bad.sobj")


class _WritesFile:
    """Unpickling this with pickle.loads would create the file named in path."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


class _Shell:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def _global_pickle(path) -> bytes:
    # Protocol 0 text form: GLOBAL 'builtins open', args tuple, REDUCE.
    return b"cbuiltins\nopen\n(V" + str(path).encode() + b"\nVw\ntR."


def _malicious(kind: str, path) -> bytes:
    if kind == "reduce_open":
        return pickle.dumps(_WritesFile(str(path)), protocol=2)
    if kind == "reduce_system":
        return pickle.dumps(_Shell(str(path)), protocol=4)  # STACK_GLOBAL + REDUCE
    if kind == "global_protocol0":
        return _global_pickle(path)
    if kind == "inside_list":
        return pickle.dumps([1.0, 2.0, _WritesFile(str(path)), 3.0], protocol=2)
    if kind == "after_floats_in_batch":
        return pickle.dumps([float(i) for i in range(1500)] + [_Shell(str(path))], protocol=2)
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind", ["reduce_open", "reduce_system", "global_protocol0", "inside_list", "after_floats_in_batch"]
)
def test_malicious_pickles_are_refused_and_never_run(tmp_path, kind):
    target = tmp_path / "pwned"
    data = _malicious(kind, target)
    # Prove the payload is live: the stock unpickler really does create the file ...
    if kind != "reduce_system":  # (os.system needs a shell; open() is enough proof)
        obj = pickle.loads(data)
        if hasattr(obj, "close"):
            obj.close()
        assert target.exists()
        target.unlink()
    # ... and the safe reader refuses before anything runs.
    with pytest.raises(
        UnsafePickleError, match=r"refused opcode (GLOBAL|STACK_GLOBAL|SHORT_BINUNICODE|BINUNICODE)"
    ):
        loads_float_list(data, source="evil.sobj")
    with pytest.raises(UnsafePickleError):
        load_sobj(zlib.compress(data), source="evil.sobj")
    assert not target.exists()


@pytest.mark.parametrize(
    ("obj", "opcode"),
    [
        ({"a": 1.0}, "EMPTY_DICT"),
        ([1, 2, 3], "BININT1"),
        (["14.13"], "BINUNICODE"),
        ((1.0, 2.0), "a float outside a list"),
        ((), "EMPTY_TUPLE"),
        ([[1.0], [2.0]], "a second list"),
        (1.0, "a float outside a list"),
        ([1.0, None], "NONE"),
    ],
)
def test_other_structures_are_refused(obj, opcode):
    with pytest.raises(UnsafePickleError, match=opcode):
        loads_float_list(pickle.dumps(obj, protocol=2), source="x")


def test_nested_object_via_build_is_refused():
    # BUILD on a list would call __setstate__-like machinery: refused by name.
    data = b"\x80\x02](G?\xf0\x00\x00\x00\x00\x00\x00e}b."
    with pytest.raises(UnsafePickleError, match="EMPTY_DICT"):
        loads_float_list(data, source="x")
    data = b"\x80\x02](G?\xf0\x00\x00\x00\x00\x00\x00eNb."
    with pytest.raises(UnsafePickleError, match="NONE"):
        loads_float_list(data, source="x")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x80\x02]q\x00(G?\xf0\x00\x00\x00\x00\x00\x00e", "no STOP"),
        (b"\x80\x02](G?\xf0\x00\x00e.", "truncated BINFLOAT|no STOP|refused"),
        (b"\x80\x02](G?\xf0\x00\x00\x00\x00\x00\x00e.junk", "bytes after STOP"),
        (b"\x80\x02](G?\xf0\x00\x00\x00\x00\x00\x00.", "STOP before a complete list"),
        (
            b"\x80\x02]GA\x00\x00\x00\x00\x00\x00\x00GA\x00\x00\x00\x00\x00\x00\x00a.",
            "more than one float outside MARK",
        ),
    ],
)
def test_malformed_streams(data, message):
    with pytest.raises(UnsafePickleError, match=message):
        loads_float_list(data, source="x")


def test_error_names_source_and_offset():
    data = pickle.dumps([1.0, 2.0, "x"], protocol=2)
    with pytest.raises(UnsafePickleError, match=r"^table\.sobj: refused opcode \w+ at byte \d+"):
        loads_float_list(data, source="table.sobj")


def test_special_float_values_decode_bit_exactly():
    values = [0.0, -0.0, 5e-324, 1.7976931348623157e308]
    got = loads_float_list(pickle.dumps(values, protocol=2))
    assert [struct.pack(">d", v) for v in got] == [struct.pack(">d", v) for v in values]
