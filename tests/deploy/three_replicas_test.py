#!/usr/bin/python3
"""Three normserve replicas behind client-side balancing, one drained.

Starts three replicas on loopback and runs normserve-loadgen against all of
them at once (target ipv4:127.0.0.1:A,127.0.0.1:B,127.0.0.1:C, round_robin,
--retries=3: the loadgen's default is one attempt, so that benchmarks see
every UNAVAILABLE).
Once every replica's /metrics shows OK requests, the middle replica gets
SIGTERM, as Kubernetes does on a rollout. Requires:
- the drained replica exits 0 (graceful shutdown);
- no request fails: the client's retry policy sends requests that met the
  closing replica (UNAVAILABLE) to another one;
- the two survivors keep serving after the drain.

Exit 0 on success, 1 on failure.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deploy_testlib as lib  # noqa: E402  pylint: disable=wrong-import-position

LOAD_SECONDS = 8


def ok_requests(server):
    samples = lib.parse_samples(server.scrape())
    return lib.sample_sum(samples, "normserve_requests_total", method="Normalize", code="OK")


def wait_for_traffic(servers, baseline, timeout):
    """Waits until every server served more OK requests than `baseline`."""
    deadline = time.monotonic() + timeout
    counts = baseline
    while time.monotonic() < deadline:
        counts = [ok_requests(s) for s in servers]
        if all(c > b for c, b in zip(counts, baseline)):
            return counts
        time.sleep(0.2)
    raise lib.TestFailure(f"not every replica got traffic in {timeout}s: {counts} (before: {baseline})")


def run(args):
    failures = []
    replicas = []
    loadgen = None
    with lib.temp_dir("normserve-replicas-") as work:
        try:
            for i in range(3):
                replicas.append(lib.Server(args.normserve, name=f"replica-{i}",
                                           extra=["--shutdown_grace_s=5"]))
            target = "ipv4:" + ",".join(r.target for r in replicas)
            report = os.path.join(work, "load.json")
            loadgen = lib.Process("normserve-loadgen", [
                args.loadgen, f"--target={target}", "--lb=round_robin", "--retries=3",
                "--concurrency=6", "--shape=8x1024",
                f"--duration={LOAD_SECONDS}s", f"--json={report}"])
            lib.log(f"loadgen -> {target}")

            before = wait_for_traffic(replicas, [0, 0, 0], timeout=LOAD_SECONDS / 2)
            lib.log(f"OK requests per replica before the drain: {before}")

            drained = replicas[1]
            t0 = time.monotonic()
            rc = drained.terminate(timeout=15)
            lib.log(f"replica-1 exited {rc} {time.monotonic() - t0:.2f}s after SIGTERM")
            lib.check(rc == 0, f"replica-1 exited {rc} on SIGTERM:\n{drained.tail()}")

            survivors = [replicas[0], replicas[2]]
            after = wait_for_traffic(survivors, [ok_requests(s) for s in survivors], timeout=3)
            lib.log(f"survivors kept serving: {after}")

            rc = loadgen.proc.wait(timeout=LOAD_SECONDS + 30)
            lib.check(rc == 0, f"normserve-loadgen exited {rc}:\n{loadgen.tail()}")
            with open(report, encoding="utf-8") as f:
                (step,) = json.load(f)["steps"]
            lib.log(f"loadgen: {step['requests']} requests, {step['ok']} OK, errors {step['errors']}")
            if step["errors"] or step["ok"] != step["requests"] or step["ok"] == 0:
                failures.append(f"requests failed across the drain: {step['errors']} "
                                f"({step['ok']} OK of {step['requests']})")
                if set(step["errors"]) == {"CANCELLED"}:
                    # gRPC core fails calls that reached a shutting-down server
                    # but no handler yet with CANCELLED, which clients do not
                    # retry (grpc/grpc issue 41785). Avoiding it takes a drain
                    # period: NOT_SERVING first, clients that watch health
                    # (service config healthCheckConfig) move away, and only
                    # then Server::Shutdown.
                    failures.append("CANCELLED on drain: the server must stop new traffic "
                                    "(health NOT_SERVING + client-side health checking) "
                                    "before grpc::Server::Shutdown")
        finally:
            if loadgen and loadgen.proc.poll() is None:
                loadgen.terminate()
            for r in replicas:
                code = r.terminate()
                if code != 0:
                    failures.append(f"{r.name} exited {code}:\n{r.tail()}")

    for failure in failures:
        lib.log("FAIL:", failure)
    return 1 if failures else 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--normserve", required=True)
    parser.add_argument("--loadgen", required=True)
    args = parser.parse_args()
    try:
        rc = run(args)
    except lib.TestFailure as e:
        lib.log("FAIL:", e)
        rc = 1
    lib.log("PASS" if rc == 0 else "FAILED")
    return rc


if __name__ == "__main__":
    sys.exit(main())
