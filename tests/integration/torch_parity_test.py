#!/usr/bin/env python3
"""Every kind over the real server against PyTorch, from a client that knows only the .proto.

Usage: torch_parity_test.py NORMSERVE_BINARY PROTOC PROTO_DIR

PyTorch computes each operation in float64 on exactly the values that went on
the wire (F.layer_norm, an RMSNorm -- F.rms_norm where this torch has it, else
torch ops --, F.batch_norm in inference and training mode, F.group_norm,
F.instance_norm); its result, rounded once to the output dtype, must match
the server's within the docs/SEMANTICS.md bounds. Exits 77 (skipped) where
torch is not installed (Debian: python3-torch).
"""
import os
import re
import subprocess
import sys
import tempfile
import unittest

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    print("torch not installed; skipping")
    sys.exit(77)
import grpc
import numpy as np

SERVER, PROTOC, PROTO_DIR = sys.argv[1:4]
del sys.argv[1:4]
_tmp = tempfile.mkdtemp(prefix="normserve_torch_")
subprocess.run([PROTOC, f"--python_out={_tmp}", f"-I{PROTO_DIR}", "normserve/v1/normserve.proto"], check=True)
sys.path.insert(0, _tmp)
from normserve.v1 import normserve_pb2 as pb  # noqa: E402

TORCH_DTYPE = {pb.FLOAT32: torch.float32, pb.FLOAT16: torch.float16, pb.BFLOAT16: torch.bfloat16}


def to_wire(values, dtype):
    """A float64 tensor -> (Tensor message, float64 tensor of the values on the wire)."""
    t = values.to(TORCH_DTYPE[dtype])
    raw = t.view(torch.int16).numpy() if dtype != pb.FLOAT32 else t.numpy()
    return pb.Tensor(dtype=dtype, shape=list(t.shape), data=raw.tobytes()), t.double()


def from_wire(msg):
    if msg.dtype == pb.FLOAT32:
        arr = np.frombuffer(msg.data, "<f4").copy()
        return torch.from_numpy(arr).reshape(tuple(msg.shape))
    arr = np.frombuffer(msg.data, "<i2").copy()
    return torch.from_numpy(arr).view(TORCH_DTYPE[msg.dtype]).reshape(tuple(msg.shape))


def ordered(bits):
    b = bits.to(torch.int32) & 0xFFFF
    return torch.where(b >= 0x8000, -(b & 0x7FFF), b)


def rms_norm(x, shape, weight, eps):
    if hasattr(F, "rms_norm"):
        return F.rms_norm(x, shape, weight, eps)
    dims = tuple(range(-len(shape), 0))
    return x * torch.rsqrt(x.pow(2).mean(dim=dims, keepdim=True) + eps) * weight


class TorchParityTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.proc = subprocess.Popen(
            [SERVER, "--host=127.0.0.1", "--port=0", "--metrics_port=-1", "--backend=cpu", "--shutdown_grace_s=1"],
            stdout=subprocess.PIPE, text=True)
        m = re.search(r"listening on (\S+:\d+)", cls.proc.stdout.readline())
        if not m:
            cls.proc.kill()
            raise RuntimeError("server printed no start-up line")
        cls.channel = grpc.insecure_channel(m.group(1))
        grpc.channel_ready_future(cls.channel).result(timeout=20)
        cls.normalize = cls.channel.unary_unary(
            "/normserve.v1.NormService/Normalize",
            request_serializer=pb.NormalizeRequest.SerializeToString,
            response_deserializer=pb.NormalizeResponse.FromString)
        torch.manual_seed(20261123)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        cls.proc.terminate()
        cls.proc.wait(timeout=15)

    def check(self, resp, want64, dtype, what):
        got = from_wire(resp.output)
        self.assertEqual(tuple(got.shape), tuple(want64.shape), what)
        want = want64.to(TORCH_DTYPE[dtype])
        if dtype == pb.FLOAT32:
            bad = (got.double() - want.double()).abs() > 1e-5 * want.double().abs().clamp(min=1.0)
        else:
            bad = (ordered(got.view(torch.int16)) - ordered(want.view(torch.int16))).abs() > 1
        self.assertFalse(bool(bad.any()), f"{what}: {int(bad.sum())} of {bad.numel()} outside the bound")

    def test_every_kind_every_dtype(self):
        for dtype in (pb.FLOAT32, pb.FLOAT16, pb.BFLOAT16):
            name = str(TORCH_DTYPE[dtype])
            x, x64 = to_wire(torch.randn(4, 6, 8, 10, dtype=torch.float64) * 2 + 0.5, dtype)
            gc, gc64 = to_wire(torch.rand(6, dtype=torch.float64) + 0.5, pb.FLOAT32)
            bc, bc64 = to_wire(torch.randn(6, dtype=torch.float64) * 0.2, pb.FLOAT32)
            gl, gl64 = to_wire(torch.rand(10, dtype=torch.float64) + 0.5, dtype)
            bl, bl64 = to_wire(torch.randn(10, dtype=torch.float64) * 0.2, dtype)
            rm, rm64 = to_wire(torch.randn(6, dtype=torch.float64), pb.FLOAT32)
            rv, rv64 = to_wire(torch.rand(6, dtype=torch.float64) + 0.5, pb.FLOAT32)

            resp = self.normalize(pb.NormalizeRequest(kind=pb.LAYER_NORM, input=x, gamma=gl, beta=bl), timeout=20)
            self.check(resp, F.layer_norm(x64, (10,), gl64, bl64, 1e-5), dtype, f"layer_norm {name}")

            resp = self.normalize(pb.NormalizeRequest(kind=pb.RMS_NORM, input=x, gamma=gl), timeout=20)
            self.check(resp, rms_norm(x64, (10,), gl64, 1e-6), dtype, f"rms_norm {name}")

            resp = self.normalize(pb.NormalizeRequest(kind=pb.BATCH_NORM, input=x, gamma=gc, beta=bc,
                                                      running_mean=rm, running_var=rv), timeout=20)
            want = F.batch_norm(x64, rm64, rv64, gc64, bc64, training=False, eps=1e-5)
            self.check(resp, want, dtype, f"batch_norm inference {name}")

            resp = self.normalize(pb.NormalizeRequest(kind=pb.BATCH_NORM, input=x, gamma=gc, beta=bc,
                                                      use_batch_stats=True), timeout=20)
            want = F.batch_norm(x64, None, None, gc64, bc64, training=True, eps=1e-5)
            self.check(resp, want, dtype, f"batch_norm batch stats {name}")

            resp = self.normalize(pb.NormalizeRequest(kind=pb.GROUP_NORM, input=x, gamma=gc, beta=bc,
                                                      num_groups=3), timeout=20)
            self.check(resp, F.group_norm(x64, 3, gc64, bc64, 1e-5), dtype, f"group_norm {name}")

            resp = self.normalize(pb.NormalizeRequest(kind=pb.INSTANCE_NORM, input=x), timeout=20)
            self.check(resp, F.instance_norm(x64, eps=1e-5), dtype, f"instance_norm {name}")


if __name__ == "__main__":
    unittest.main()
