"""The restricted unpickler bounds what a small hostile pickle can build: nesting depth, total expansion, array
sizes (charged before numpy allocates), and the numpy calls that could crash or allocate from a few bytes."""

from __future__ import annotations

import codecs
import io
import json
import pickle
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from accord.data.mmsa import (
    EXPANSION_ALLOWANCE,
    MAX_NESTING,
    _check_expansion,
    _NumpyOnlyUnpickler,
    _Refused,
    expansion_limit,
    load_mmsa_pickle,
)
from test_mmsa import mmsa_dict

RECONSTRUCT = np.zeros(0).__reduce__()[0]  # numpy's _reconstruct, under whichever module name this numpy uses
FROMBUFFER = np.zeros(1).__reduce_ex__(5)[0]  # numpy's _frombuffer (protocol-5 arrays)


class Reduce:
    """Pickles as ``fn(*args)`` (plus ``BUILD state``): how a crafted pickle calls the allow-listed globals."""

    def __init__(self, fn: Any, args: tuple[Any, ...], state: Any = None) -> None:
        self.rv = (fn, args) if state is None else (fn, args, state)

    def __reduce__(self) -> Any:
        return self.rv


def small(value: Any, key: str = "text", protocol: int = 4) -> bytes:
    """A minimal MMSA layout (1x1x1 features) with ``value`` under ``train[key]``."""

    def split() -> dict[str, Any]:
        z = np.zeros((1, 1, 1), np.float32)
        return {"text": z, "audio": z, "vision": z, "regression_labels": np.zeros(1, np.float32)}

    raw = {"train": split(), "valid": split(), "test": split()}
    raw["train"][key] = value
    return pickle.dumps(raw, protocol=protocol)


def nested_lists(depth: int) -> bytes:
    """``small`` with ``depth`` lists nested in one another under ``train.text`` (opcodes: EMPTY_LIST × depth,
    APPEND × depth-1: pickle.dumps itself would hit the recursion limit)."""
    placeholder = "PLACEHOLDER"
    data = small(placeholder, protocol=2)
    op = b"X" + len(placeholder).to_bytes(4, "little") + placeholder.encode()
    assert data.count(op) == 1
    return data.replace(op, b"]" * depth + b"a" * (depth - 1))


def hostile() -> dict[str, bytes]:
    """Small pickles that, without the bounds, expand to gigabytes, crash numpy or never finish."""
    a = [0] * 1000
    b = [a] * 1000
    c = [b] * 1000  # 10^9 elements once copied, from memo references
    shared = [0] * 20_000  # one value list shared by 500 object arrays: 10^7 pointers when built
    arrays = [Reduce(RECONSTRUCT, (np.ndarray, (0,), b"b"), (1, (20_000,), np.dtype("O"), False, shared))
              for _ in range(500)]
    hexed: Any = b"ab"
    for _ in range(31):  # each hex encoding doubles: 2^32 bytes
        hexed = Reduce(codecs.encode, (hexed, "hex"))
    cycle: list[Any] = []
    cycle.append(cycle)
    field_offset = Reduce(np.dtype, ("f8", False, True),
                          (3, "|", None, ("a",), {"a": (np.dtype("f8"), 10**7)}, 8, 1, 16))
    return {
        "nested_lists": small(c),
        "nested_lists_as_ids": small(c, key="id"),
        "deep_nesting": nested_lists(10_000),
        "shared_object_state": small(arrays, key="id"),
        "object_state_shorter_than_shape": small(
            Reduce(RECONSTRUCT, (np.ndarray, (0,), b"b"), (1, (5,), np.dtype("O"), False, ["a", "b", "c"])), key="id"),
        "dtype_field_offset": small(Reduce(RECONSTRUCT, (np.ndarray, (0,), b"b"), (1, (1, 1, 1), field_offset, False,
                                                                                  b"\0" * 8))),
        "codec_chain": small(hexed),
        "ndarray_called": small(Reduce(np.ndarray, ((10**9,), np.dtype("O")))),
        "frombuffer_virtual": small(Reduce(FROMBUFFER, (b"\0" * 8, np.dtype("f8"), (10**9,), "C"))),
        "reconstruct_allocating": small(Reduce(RECONSTRUCT, (np.ndarray, (10**9,), np.dtype("O")))),
        "cycle": small(cycle),
    }


EXPECTED = {  # what each refusal says after "<file>: "
    "nested_lists": r"would expand to 1,00\d,\d{{3}},\d{{3}} elements once shared references are copied, more than the "
                    r"limit of {limit} \(one element per byte of the file \+ 1,000,000\); refusing to expand it",
    "nested_lists_as_ids": r"would expand to 1,00\d,\d{{3}},\d{{3}} elements .* more than the limit of {limit} ",
    "deep_nesting": r"containers nest more than 32 levels deep \(an MMSA pickle nests 3: ",
    "shared_object_state": r"its numpy arrays would hold more than {limit} elements \(at an array of shape "
                           r"\(20000,\)\); the limit is one element per byte of the file \+ 1,000,000",
    "object_state_shorter_than_shape": r"refusing a numpy array of shape \(5,\) and dtype '\|O' whose state holds 3 "
                                       r"values for it",
    "dtype_field_offset": r"refusing numpy dtype 'f8' with fields, sub-arrays or an unknown state",
    "codec_chain": r"refusing _codecs.encode with encoding 'hex' \(pickles use latin1\)",
    "ndarray_called": r"refusing to unpickle numpy.ndarray called directly: an MMSA pickle may only contain numpy",
    "frombuffer_virtual": r"its numpy arrays would hold more than {limit} elements \(at an array of shape "
                          r"\(1000000000,\)\)",
    "reconstruct_allocating": r"refusing numpy _reconstruct of shape \(1000000000,\) \(numpy's pickles reconstruct "
                              r"an empty ndarray",
    "cycle": r"a container holds itself \(a reference cycle\)",
}

# Loads each file in a fresh interpreter (a crash of numpy would end the test run otherwise) and reports, per file,
# the error and the growth of the peak RSS during its load. Address space is capped so that a guard that regressed
# fails with MemoryError instead of taking the machine's memory.
CHILD = textwrap.dedent("""
    import json, resource, sys
    from accord.core.errors import DataError
    from accord.data.mmsa import load_mmsa_pickle
    load_mmsa_pickle(sys.argv[1])  # warm up on a valid file: first-use allocations are not counted below
    vm = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = vm + (3 << 30)
    resource.setrlimit(resource.RLIMIT_AS, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard))
    out = {}
    for path in sys.argv[2:]:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            load_mmsa_pickle(path)
            error, kind = None, None
        except BaseException as err:
            error, kind = str(err), type(err).__name__
        out[path] = {"error": error, "type": kind,
                     "rss_growth_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024}
    print(json.dumps(out))
""")


def test_hostile_pickles_are_refused_with_bounded_memory(tmp_path: Path) -> None:
    valid = tmp_path / "valid.pkl"
    valid.write_bytes(pickle.dumps(mmsa_dict((768, 5, 20)), protocol=4))
    files = {}
    for name, data in hostile().items():
        files[name] = tmp_path / f"{name}.pkl"
        files[name].write_bytes(data)
    assert files["nested_lists"].stat().st_size < 7_000 and files["deep_nesting"].stat().st_size < 21_000
    proc = subprocess.run([sys.executable, "-c", CHILD, str(valid), *map(str, files.values())],
                          capture_output=True, text=True, timeout=120, cwd=Path(__file__).parent)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    for name, file in files.items():
        got = report[str(file)]
        assert got["type"] == "DataError", (name, got)
        limit = f"{expansion_limit(file.stat().st_size):,}"
        assert re.match(re.escape(f"{file}: ") + EXPECTED[name].format(limit=limit), got["error"]), (name, got)
        assert "\n" not in got["error"]
        assert got["rss_growth_mb"] < 50, (name, got)  # the 10^9-element graph, 2^32-byte codec chain, ... never built


def test_expansion_is_counted_exactly_without_copying() -> None:
    inner = [0, 0, 0]
    shared, unshared = [inner, inner], [[0, 0, 0], [0, 0, 0]]
    assert _check_expansion(shared, 100) == _check_expansion(unshared, 100) == 1 + 2 * (1 + 3)
    # dict: 1 + key 'a' (1 char) + 'xyz' (3) + key 'b' (1) + 6 numbers; an object array: 1 + its elements
    assert _check_expansion({"a": "xyz", "b": np.zeros((2, 3))}, 100) == 12
    assert _check_expansion(np.array(["ab", "cde"], dtype=object), 100) == 1 + 2 + 3
    with pytest.raises(_Refused, match="would expand to 9 elements .* more than the limit of 8 "):
        _check_expansion(shared, 8)
    deepest: list[Any] = []
    for _ in range(MAX_NESTING - 1):
        deepest = [deepest]
    assert _check_expansion(deepest, 100) == MAX_NESTING  # 32 levels pass, 33 do not
    with pytest.raises(_Refused, match="containers nest more than 32 levels deep"):
        _check_expansion([deepest], 100)


def test_limits_leave_real_files_far_below() -> None:
    """The tests' MMSA writers hold ~0.25 element per byte (float32 features); the limit allows 1 per byte + 10^6."""
    assert expansion_limit(1_000) == 1_000 + EXPANSION_ALLOWANCE == 1_001_000
    for raw in (mmsa_dict((768, 5, 20)), mmsa_dict((768, 33, 709), sims=True)):
        for protocol in (2, 4, 5):
            data = pickle.dumps(raw, protocol=protocol)
            obj = _NumpyOnlyUnpickler(io.BytesIO(data), expansion_limit(len(data))).load()
            assert _check_expansion(obj, expansion_limit(len(data))) < 0.27 * len(data)


def test_numpy_scalars_strings_and_byte_orders_still_load(tmp_path: Path) -> None:
    """The guards admit every plain array numpy writes: U/S strings, big-endian floats, numpy scalars in object
    arrays, protocols 0 to 5."""
    raw = mmsa_dict((768, 5, 20))
    raw["train"]["raw_text"] = raw["train"]["raw_text"].astype(str)
    raw["valid"]["regression_labels"] = raw["valid"]["regression_labels"].astype(">f4")
    raw["test"]["id"] = raw["test"]["id"].astype("S")
    raw["test"]["regression_labels"] = np.array([np.float32(v) for v in raw["test"]["regression_labels"]], dtype=object)
    for protocol in range(6):
        path = tmp_path / f"p{protocol}.pkl"
        path.write_bytes(pickle.dumps(raw, protocol=protocol))
        ds = load_mmsa_pickle(path)
        assert ds["train"].raw_text[0] == "train sentence 0 café"
        assert ds["valid"].labels.tolist() == raw["valid"]["regression_labels"].astype("<f4").tolist()
        assert ds["test"].ids == [f"vidtest{i // 2}$_${i}" for i in range(3)]
        assert ds["test"].labels.tolist() == [float(v) for v in raw["test"]["regression_labels"]]
