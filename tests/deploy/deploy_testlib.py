"""Helpers shared by the deploy tests: processes on loopback ports, the
normserve server and Prometheus, and a small grpcio driver.

Debian python3 only (python3-grpcio, python3-protobuf, python3-yaml); the
Python protobuf module is generated at test time with protoc.
"""

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

SKIP = 77  # CTest's SKIP_RETURN_CODE for these tests.


class TestFailure(Exception):
    pass


def log(*args):
    print(*args, flush=True)


def check(condition, message):
    if not condition:
        raise TestFailure(message)


def free_port():
    # The port is free when probed; Prometheus, which cannot pick its own
    # port, binds it a moment later. A clash is unlikely on loopback.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Process:
    """A child process whose merged stdout/stderr is read by a thread."""

    def __init__(self, name, argv, cwd=None):
        self.name = name
        self.argv = argv
        self.lines = queue.Queue()
        self.output = []
        self.proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.output.append(line)
            self.lines.put(line)

    def wait_for_line(self, pattern, timeout):
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    raise TestFailure(f"{self.name} exited with {self.proc.returncode} "
                                      f"before printing /{pattern}/:\n{self.tail()}")
                continue
            match = regex.search(line)
            if match:
                return match
        raise TestFailure(f"{self.name} did not print /{pattern}/ in {timeout}s:\n{self.tail()}")

    def tail(self, n=30):
        return "".join(self.output[-n:])

    def terminate(self, timeout=15):
        """SIGTERM, then SIGKILL after `timeout` seconds. Returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(timeout=5)
        return self.proc.returncode


SERVER_LINE = (r"normserve listening on (?P<host>[\d.]+):(?P<port>\d+) "
               r"metrics on [\d.]+:(?P<mport>\d+) backend (?P<backend>\w+)")


class Server(Process):
    """The normserve binary on free loopback ports, CPU backend."""

    def __init__(self, binary, name="normserve", extra=()):
        argv = [binary, "--host=127.0.0.1", "--port=0", "--metrics_port=0",
                "--backend=cpu", "--cpu_threads=1", *extra]
        super().__init__(name, argv)
        match = self.wait_for_line(SERVER_LINE, timeout=30)
        self.port = int(match.group("port"))
        self.metrics_port = int(match.group("mport"))
        self.target = f"127.0.0.1:{self.port}"
        self.metrics_url = f"http://127.0.0.1:{self.metrics_port}/metrics"

    def scrape(self):
        with urllib.request.urlopen(self.metrics_url, timeout=10) as r:
            return r.read().decode()


def parse_samples(text):
    """Prometheus text format -> [(name, {label: value}, float)]."""
    samples = []
    sample_re = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)')
    label_re = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = sample_re.match(line)
        if not m:
            continue
        labels = dict(label_re.findall(m.group(3) or ""))
        samples.append((m.group(1), labels, float(m.group(4))))
    return samples


def sample_sum(samples, name, **labels):
    return sum(v for n, l, v in samples
               if n == name and all(l.get(k) == want for k, want in labels.items()))


class Prometheus(Process):
    """Debian's prometheus with a temporary config and storage directory."""

    def __init__(self, binary, workdir, config_text):
        self.port = free_port()
        config = os.path.join(workdir, "prometheus.yml")
        with open(config, "w", encoding="utf-8") as f:
            f.write(config_text)
        argv = [binary, f"--config.file={config}",
                f"--storage.tsdb.path={os.path.join(workdir, 'data')}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn"]
        super().__init__("prometheus", argv, cwd=workdir)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            check(self.proc.poll() is None, f"prometheus exited:\n{self.tail()}")
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise TestFailure(f"prometheus not ready in 30s:\n{self.tail()}")

    def api(self, path, **params):
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params, doseq=True)
        try:
            with urllib.request.urlopen(url, timeout=20) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:
            # Bad queries answer 400 with a JSON error body.
            return json.load(e)

    def query(self, expr):
        return self.api("query", query=expr)


def generate_proto_module(protoc, proto_root, workdir):
    """Compiles normserve.proto to Python and returns the module."""
    out = os.path.join(workdir, "py")
    os.makedirs(out, exist_ok=True)
    subprocess.run([protoc, f"-I{proto_root}", f"--python_out={out}",
                    "normserve/v1/normserve.proto"], check=True)
    sys.path.insert(0, out)
    from normserve.v1 import normserve_pb2  # pylint: disable=import-outside-toplevel
    return normserve_pb2


class PythonDriver:
    """Generic unary and streaming calls with grpcio; no generated stubs."""

    SERVICE = "/normserve.v1.NormService/"

    def __init__(self, pb, target):
        import grpc  # pylint: disable=import-outside-toplevel
        self.grpc = grpc
        self.pb = pb
        self.channel = grpc.insecure_channel(target)
        grpc.channel_ready_future(self.channel).result(timeout=10)
        self.normalize = self.channel.unary_unary(
            self.SERVICE + "Normalize",
            request_serializer=pb.NormalizeRequest.SerializeToString,
            response_deserializer=pb.NormalizeResponse.FromString)
        self.stream = self.channel.stream_stream(
            self.SERVICE + "NormalizeStream",
            request_serializer=pb.NormalizeRequest.SerializeToString,
            response_deserializer=pb.StreamResponse.FromString)
        self.info = self.channel.unary_unary(
            self.SERVICE + "GetServerInfo",
            request_serializer=pb.GetServerInfoRequest.SerializeToString,
            response_deserializer=pb.GetServerInfoResponse.FromString)

    def request(self, kind, rows, cols, dtype="FLOAT32", request_id=0):
        import numpy as np  # pylint: disable=import-outside-toplevel
        pb = self.pb
        x = np.random.default_rng(request_id).standard_normal((rows, cols))
        data = x.astype(np.float16 if dtype == "FLOAT16" else np.float32).tobytes()
        return pb.NormalizeRequest(
            request_id=request_id, kind=pb.NormKind.Value(kind),
            input=pb.Tensor(dtype=pb.DType.Value(dtype), shape=[rows, cols], data=data))

    def mixed_load(self, seconds):
        """Valid LayerNorm/RMSNorm calls, a stream, GetServerInfo and a few
        invalid requests (so that the error and rejection panels have data).
        Returns {code name: count}."""
        codes = {}
        deadline = time.monotonic() + seconds
        i = 0
        while time.monotonic() < deadline:
            i += 1
            if i % 10 == 0:
                req = self.request("LAYER_NORM", 2, 64, request_id=i)
                req.input.data = req.input.data[:-4]  # Wrong size: INVALID_ARGUMENT.
            else:
                kind = "LAYER_NORM" if i % 2 else "RMS_NORM"
                dtype = "FLOAT16" if i % 3 == 0 else "FLOAT32"
                req = self.request(kind, 4, 256, dtype, request_id=i)
            try:
                self.normalize(req, timeout=10)
                code = "OK"
            except self.grpc.RpcError as e:
                code = e.code().name
            codes[code] = codes.get(code, 0) + 1
            if i % 25 == 0:
                self.info(self.pb.GetServerInfoRequest(), timeout=10)
                replies = list(self.stream(iter([self.request("RMS_NORM", 2, 128, request_id=i + k)
                                                 for k in range(4)]), timeout=10))
                check(len(replies) == 4, f"stream answered {len(replies)} of 4")
        return codes

    def close(self):
        self.channel.close()


def find_tool(name, explicit=None):
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    for d in os.environ.get("PATH", "").split(os.pathsep):
        path = os.path.join(d, name)
        if os.access(path, os.X_OK):
            return path
    return None


def temp_dir(prefix):
    return tempfile.TemporaryDirectory(prefix=prefix)
