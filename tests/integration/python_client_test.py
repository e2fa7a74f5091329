#!/usr/bin/env python3
"""A Python client that knows only the .proto: every kind against numpy.

Usage: python_client_test.py NORMSERVE_BINARY PROTOC PROTO_DIR

Generates the message classes with `protoc --python_out` into a temporary
directory (no grpc_tools needed: calls go through grpc's generic
unary_unary), starts the server on a free loopback port, sends Normalize for
every kind and dtype with random inputs, and checks each output against a
float64 numpy computation within the docs/SEMANTICS.md bounds: 1 ulp for
float16/bfloat16 outputs, 1e-5 * max(1, |ref|) for float32.
"""
import os
import re
import subprocess
import sys
import tempfile
import unittest

import grpc
import numpy as np

SERVER, PROTOC, PROTO_DIR = sys.argv[1:4]
del sys.argv[1:4]

_tmp = tempfile.mkdtemp(prefix="normserve_py_")
subprocess.run([PROTOC, f"--python_out={_tmp}", f"-I{PROTO_DIR}", "normserve/v1/normserve.proto"], check=True)
sys.path.insert(0, _tmp)
from normserve.v1 import normserve_pb2 as pb  # noqa: E402


def bf16_bits(x):
    """float64 -> bfloat16 bits, rounded once to nearest even, NaN kept NaN."""
    f = np.ascontiguousarray(x, dtype=np.float64)
    # bfloat16 keeps 7 of float64's 52 mantissa bits: round at bit 45 of the
    # float64 pattern directly (going through float32 could round twice).
    u = f.view(np.uint64)
    keep = ~np.uint64((1 << 45) - 1)
    r = ((u + np.uint64((1 << 44) - 1) + ((u >> np.uint64(45)) & np.uint64(1))) & keep).view(np.float64)
    with np.errstate(over="ignore"):
        bits = (r.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    nan = np.isnan(f)
    bits[nan] = 0x7FC0
    return bits


def bf16_to_f64(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32).astype(np.float64)


DTYPES = {
    pb.FLOAT32: ("float32", 4),
    pb.FLOAT16: ("float16", 2),
    pb.BFLOAT16: ("bfloat16", 2),
}


def to_tensor(values, dtype):
    """float64 array -> (Tensor, the float64 values actually on the wire)."""
    values = np.asarray(values, dtype=np.float64)
    if dtype == pb.FLOAT32:
        wire = values.astype("<f4")
        data, exact = wire.tobytes(), wire.astype(np.float64)
    elif dtype == pb.FLOAT16:
        wire = values.astype("<f2")
        data, exact = wire.tobytes(), wire.astype(np.float64)
    else:
        bits = bf16_bits(values).astype("<u2")
        data, exact = bits.tobytes(), bf16_to_f64(bits)
    return pb.Tensor(dtype=dtype, shape=list(values.shape), data=data), exact


def from_tensor(t):
    shape = tuple(t.shape)
    if t.dtype == pb.FLOAT32:
        return np.frombuffer(t.data, "<f4").astype(np.float64).reshape(shape)
    if t.dtype == pb.FLOAT16:
        return np.frombuffer(t.data, "<f2").astype(np.float64).reshape(shape)
    return bf16_to_f64(np.frombuffer(t.data, "<u2")).reshape(shape)


def ordered16(bits):
    b = bits.astype(np.int64)
    return np.where(b & 0x8000, -(b & 0x7FFF), b)


def check_bounds(test, got_tensor, ref, dtype, what):
    """got (wire tensor) vs float64 ref rounded once to dtype."""
    test.assertEqual(got_tensor.dtype, dtype, what)
    test.assertEqual(tuple(got_tensor.shape), ref.shape, what)
    if dtype == pb.FLOAT32:
        got = np.frombuffer(got_tensor.data, "<f4").astype(np.float64)
        want = ref.reshape(-1).astype(np.float32).astype(np.float64)
        bad = np.abs(got - want) > 1e-5 * np.maximum(1.0, np.abs(want))
    else:
        got_bits = np.frombuffer(got_tensor.data, "<u2")
        if dtype == pb.FLOAT16:
            want_bits = ref.reshape(-1).astype("<f2").view("<u2")
        else:
            want_bits = bf16_bits(ref.reshape(-1))
        bad = np.abs(ordered16(got_bits) - ordered16(want_bits)) > 1
    test.assertFalse(bad.any(), f"{what}: {int(bad.sum())} of {bad.size} elements out of bounds")


def normalize_groups(x, axes, eps, subtract_mean=True):
    if subtract_mean:
        mean = x.mean(axis=axes, keepdims=True)
        var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
        return (x - mean) / np.sqrt(var + eps)
    return x / np.sqrt((x ** 2).mean(axis=axes, keepdims=True) + eps)


class NormServiceTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.proc = subprocess.Popen(
            [SERVER, "--host=127.0.0.1", "--port=0", "--metrics_port=-1", "--backend=cpu", "--shutdown_grace_s=1"],
            stdout=subprocess.PIPE, text=True)
        line = cls.proc.stdout.readline()
        m = re.search(r"listening on (\S+:\d+)", line)
        if not m:
            cls.proc.kill()
            raise RuntimeError(f"no start-up line: {line!r}")
        cls.channel = grpc.insecure_channel(m.group(1))
        grpc.channel_ready_future(cls.channel).result(timeout=20)
        cls.normalize = cls.channel.unary_unary(
            "/normserve.v1.NormService/Normalize",
            request_serializer=pb.NormalizeRequest.SerializeToString,
            response_deserializer=pb.NormalizeResponse.FromString)
        cls.rng = np.random.default_rng(1234)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        cls.proc.terminate()
        cls.proc.wait(timeout=15)

    def call(self, **fields):
        return self.normalize(pb.NormalizeRequest(**fields), timeout=20)

    def test_layer_and_rms_norm(self):
        for kind in (pb.LAYER_NORM, pb.RMS_NORM):
            for dtype in DTYPES:
                x, xw = to_tensor(self.rng.normal(0.5, 2.0, (3, 5, 192)), dtype)
                g, gw = to_tensor(self.rng.normal(1.0, 0.2, (192,)), dtype)
                b, bw = to_tensor(self.rng.normal(0.0, 0.2, (192,)), dtype)
                eps = 1e-5 if kind == pb.LAYER_NORM else 1e-6
                resp = self.call(kind=kind, input=x, gamma=g, beta=b)
                ref = normalize_groups(xw, -1, eps, kind == pb.LAYER_NORM) * gw + bw
                check_bounds(self, resp.output, ref, dtype, f"kind {kind} dtype {DTYPES[dtype][0]}")

    def test_layer_norm_two_dims_adaptive_unit_offset_and_residual(self):
        dtype = pb.BFLOAT16
        x, xw = to_tensor(self.rng.normal(0, 1, (2, 4, 8, 16)), dtype)
        r, rw = to_tensor(self.rng.normal(0, 1, (2, 4, 8, 16)), dtype)
        # Per-sample scale and shift over the last two dims (DiT-style).
        g, gw = to_tensor(self.rng.normal(0, 0.3, (2, 1, 8, 16)), pb.FLOAT32)
        b, bw = to_tensor(self.rng.normal(0, 0.3, (2, 1, 8, 16)), pb.FLOAT32)
        resp = self.call(kind=pb.LAYER_NORM, input=x, residual=r, gamma=g, beta=b, normalized_dims=2,
                         unit_offset=True, epsilon=1e-4, return_stats=True)
        h = bf16_to_f64(bf16_bits(xw + rw)).reshape(xw.shape)
        check_bounds(self, resp.residual_out, h, dtype, "residual_out")
        ref = normalize_groups(h, (-2, -1), 1e-4) * (1 + gw) + bw
        check_bounds(self, resp.output, ref, dtype, "adaptive layer norm")
        self.assertEqual(tuple(resp.mean.shape), (2, 4))
        np.testing.assert_allclose(from_tensor(resp.mean), h.mean(axis=(-2, -1)), rtol=1e-5, atol=1e-6)

    def test_batch_norm_inference_and_batch_stats(self):
        for dtype in DTYPES:
            x, xw = to_tensor(self.rng.normal(1.0, 2.0, (4, 6, 5, 5)), dtype)
            g, gw = to_tensor(self.rng.normal(1.0, 0.2, (6,)), pb.FLOAT32)
            b, bw = to_tensor(self.rng.normal(0.0, 0.2, (6,)), pb.FLOAT32)
            m, mw = to_tensor(self.rng.normal(1.0, 0.5, (6,)), pb.FLOAT32)
            v, vw = to_tensor(self.rng.uniform(0.5, 3.0, (6,)), pb.FLOAT32)
            c = (None, slice(None), None, None)
            resp = self.call(kind=pb.BATCH_NORM, input=x, gamma=g, beta=b, running_mean=m, running_var=v)
            ref = (xw - mw[c]) / np.sqrt(vw[c] + 1e-5) * gw[c] + bw[c]
            check_bounds(self, resp.output, ref, dtype, f"batch_norm inference {DTYPES[dtype][0]}")

            resp = self.call(kind=pb.BATCH_NORM, input=x, gamma=g, beta=b, use_batch_stats=True)
            mean = xw.mean(axis=(0, 2, 3))
            var = xw.var(axis=(0, 2, 3))
            ref = (xw - mean[c]) / np.sqrt(var[c] + 1e-5) * gw[c] + bw[c]
            check_bounds(self, resp.output, ref, dtype, f"batch_norm batch stats {DTYPES[dtype][0]}")
            np.testing.assert_allclose(from_tensor(resp.mean), mean, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(from_tensor(resp.variance), var, rtol=1e-5, atol=1e-6)

    def test_group_and_instance_norm(self):
        for dtype in DTYPES:
            x, xw = to_tensor(self.rng.normal(-0.5, 1.5, (2, 8, 4, 6)), dtype)
            g, gw = to_tensor(self.rng.normal(1.0, 0.2, (8,)), dtype)
            b, bw = to_tensor(self.rng.normal(0.0, 0.2, (8,)), dtype)
            c = (None, slice(None), None, None)
            resp = self.call(kind=pb.GROUP_NORM, input=x, gamma=g, beta=b, num_groups=4)
            grouped = normalize_groups(xw.reshape(2, 4, 2, 4, 6), (2, 3, 4), 1e-5).reshape(xw.shape)
            check_bounds(self, resp.output, grouped * gw[c] + bw[c], dtype, f"group_norm {DTYPES[dtype][0]}")
            resp = self.call(kind=pb.INSTANCE_NORM, input=x, gamma=g, beta=b)
            inst = normalize_groups(xw, (2, 3), 1e-5)
            check_bounds(self, resp.output, inst * gw[c] + bw[c], dtype, f"instance_norm {DTYPES[dtype][0]}")

    def test_output_dtype_and_large_offset_rows(self):
        # A row far from zero must not lose its variance (SEMANTICS.md).
        x, xw = to_tensor(np.array([[40000.0, 40001.0, 40002.0, 40003.0]]), pb.FLOAT32)
        resp = self.call(kind=pb.LAYER_NORM, input=x, output_dtype=pb.FLOAT16)
        check_bounds(self, resp.output, normalize_groups(xw, -1, 1e-5), pb.FLOAT16, "offset row")

    def test_bad_request_is_invalid_argument(self):
        x = pb.Tensor(dtype=pb.FLOAT16, shape=[1, 4096], data=b"\0" * 4094)
        with self.assertRaises(grpc.RpcError) as err:
            self.call(kind=pb.LAYER_NORM, input=x)
        self.assertEqual(err.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertEqual(err.exception.details(), "input.data has 4094 bytes; shape [1,4096] FLOAT16 needs 8192")


if __name__ == "__main__":
    unittest.main(verbosity=2)
