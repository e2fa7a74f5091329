#!/usr/bin/python3
"""Lints the Dockerfile and .dockerignore (no Docker engine is needed, and
none runs in CI, so the images are not built here).

Debian has no hadolint, and npm's dockerfilelint predates multi-stage
builds (it flags ARG-based FROM lines and HEALTHCHECK --start-period), so
the rules this project cares about are checked here:
- a syntax directive; images only through ARGs with pinned tags (no
  :latest); named stages; COPY --from names an earlier stage;
- build stages compile with scripts/build.sh; no ADD of URLs, no sudo, no
  apt-get upgrade; apt-get install with --no-install-recommends and the
  lists removed in the same RUN;
- final targets `cpu` (debian:12-slim) and `cuda` (an nvidia/cuda runtime
  image), each with a numeric non-root USER, EXPOSE 50051 9464, a
  HEALTHCHECK through `normserve-cli health`, exec-form ENTRYPOINT/CMD;
- every repository path the Dockerfile runs exists and is executable, and
  .dockerignore keeps .git and build trees out without dropping them.

Usage: dockerfile_lint_test.py --root REPO
"""

import argparse
import fnmatch
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deploy_testlib as lib  # noqa: E402  pylint: disable=wrong-import-position

REQUIRED_BY_BUILD = ("scripts/build.sh", "scripts/setup.sh", "deploy/docker/runtime-packages.sh",
                     "CMakeLists.txt", "proto/normserve/v1/normserve.proto", "server/main.cc")


def instructions(text):
    """[(line number, KEYWORD, arguments)] with continuations joined."""
    result = []
    pending, start = "", 0
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        pending += stripped
        keyword, _, args = pending.partition(" ")
        result.append((start, keyword.upper(), args.strip()))
        pending = ""
    return result


def is_exec_form(args):
    try:
        value = json.loads(args)
    except ValueError:
        return False
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def lint(root, failures):
    path = os.path.join(root, "Dockerfile")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if not text.startswith("# syntax=docker/dockerfile:1"):
        failures.append("line 1: no `# syntax=docker/dockerfile:1` directive")

    args = {}
    stages = {}
    stage = None
    for number, keyword, rest in instructions(text):
        where = f"Dockerfile:{number}"
        if keyword == "ARG" and stage is None:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            m = re.fullmatch(r"(\S+)\s+AS\s+(\S+)", rest, re.I)
            if not m:
                failures.append(f"{where}: unnamed stage: FROM {rest}")
                continue
            image, name = m.groups()
            ref = re.fullmatch(r"\$\{(\w+)\}", image)
            if not ref or ref.group(1) not in args:
                failures.append(f"{where}: base image {image} is not an ARG declared before the first FROM")
                resolved = image
            else:
                resolved = args[ref.group(1)]
            if ":" not in resolved or resolved.endswith(":latest"):
                failures.append(f"{where}: base image {resolved} has no pinned tag")
            stage = {"name": name, "image": resolved, "lines": []}
            stages[name] = stage
        elif stage is None:
            failures.append(f"{where}: {keyword} before the first FROM")
        else:
            stage["lines"].append((number, keyword, rest))

    for name, stage in stages.items():
        keywords = {}
        for number, keyword, rest in stage["lines"]:
            where = f"Dockerfile:{number} ({name})"
            keywords.setdefault(keyword, []).append(rest)
            if keyword == "ADD" and re.search(r"https?://", rest):
                failures.append(f"{where}: ADD of a URL; download in a RUN with a checksum")
            if keyword == "COPY":
                m = re.search(r"--from=(\S+)", rest)
                if m and (m.group(1) not in stages or list(stages).index(m.group(1)) >= list(stages).index(name)):
                    failures.append(f"{where}: COPY --from={m.group(1)} is not an earlier stage")
            if keyword == "RUN":
                if re.search(r"\bsudo\b", rest):
                    failures.append(f"{where}: sudo in RUN")
                if re.search(r"apt-get\s+(dist-)?upgrade", rest):
                    failures.append(f"{where}: apt-get upgrade; pin the base image instead")
                if "apt-get install" in rest:
                    if "--no-install-recommends" not in rest:
                        failures.append(f"{where}: apt-get install without --no-install-recommends")
                    if "rm -rf /var/lib/apt/lists" not in rest:
                        failures.append(f"{where}: apt lists not removed in the same RUN")
                for script in re.findall(r"(?<![\w/])((?:scripts|deploy)/[\w./-]+)", rest):
                    script_path = os.path.join(root, script.rstrip("*"))
                    if not os.access(script_path, os.X_OK):
                        failures.append(f"{where}: {script} is not an executable file of the repository")
        stage["keywords"] = keywords

    builds = [s for n, s in stages.items() if n.startswith("build")]
    if not builds:
        failures.append("no build stage")
    for stage in builds:
        if not any("scripts/build.sh" in r for r in stage["keywords"].get("RUN", [])):
            failures.append(f"stage {stage['name']} does not build with scripts/build.sh")

    for name, base in (("cpu", r"debian:12-slim"), ("cuda", r"nvidia/cuda:[\w.-]+-runtime-[\w.-]+")):
        stage = stages.get(name)
        if not stage:
            failures.append(f"no `{name}` target")
            continue
        kw = stage["keywords"]
        if not re.fullmatch(base, stage["image"]):
            failures.append(f"target {name} is based on {stage['image']}, expected {base}")
        users = kw.get("USER", [])
        if len(users) != 1 or not users[0].isdigit() or users[0] == "0":
            failures.append(f"target {name}: USER {users}; want one numeric non-root uid")
        exposed = sorted(p for e in kw.get("EXPOSE", []) for p in e.split())
        if exposed != ["50051", "9464"]:
            failures.append(f"target {name}: EXPOSE {exposed}, expected 50051 9464")
        health = kw.get("HEALTHCHECK", [])
        if len(health) != 1 or "CMD" not in health[0]:
            failures.append(f"target {name}: HEALTHCHECK {health}")
        else:
            command = health[0].split("CMD", 1)[1].strip()
            if not is_exec_form(command) or json.loads(command)[:2] != ["normserve-cli", "health"]:
                failures.append(f"target {name}: HEALTHCHECK does not run `normserve-cli health`: {command}")
        for keyword in ("ENTRYPOINT", "CMD"):
            values = kw.get(keyword, [])
            if len(values) != 1 or not is_exec_form(values[0]):
                failures.append(f"target {name}: {keyword} missing or not in exec form")
        if json.loads(kw.get("ENTRYPOINT", ['[""]'])[0] or '[""]') != ["normserve"]:
            failures.append(f"target {name}: ENTRYPOINT is not normserve")
        cmd = " ".join(json.loads(kw["CMD"][0])) if kw.get("CMD") and is_exec_form(kw["CMD"][0]) else ""
        for flag in ("--host=0.0.0.0", "--port=50051", "--metrics_port=9464"):
            if flag not in cmd:
                failures.append(f"target {name}: CMD lacks {flag}")
    if list(stages)[-1:] != ["cpu"]:
        failures.append("the last stage (the default target) should be the CPU image")


def lint_dockerignore(root, failures):
    path = os.path.join(root, ".dockerignore")
    if not os.path.exists(path):
        failures.append(".dockerignore is missing")
        return
    with open(path, encoding="utf-8") as f:
        patterns = [line.strip() for line in f if line.strip() and not line.startswith("#")]

    def ignored(rel):
        state = False
        for pattern in patterns:
            negate = pattern.startswith("!")
            p = pattern[1:] if negate else pattern
            p = p.lstrip("/")
            parts = rel.split("/")
            hit = any(fnmatch.fnmatch("/".join(parts[:i]), p) or
                      (p.startswith("**/") and fnmatch.fnmatch("/".join(parts[i - 1:i]), p[3:]))
                      for i in range(1, len(parts) + 1))
            if hit:
                state = not negate
        return state

    for rel in (".git/config", "build/CMakeCache.txt", "build-debug/x", "node_modules/x/index.js"):
        if not ignored(rel):
            failures.append(f".dockerignore sends {rel} to the builder")
    for rel in REQUIRED_BY_BUILD:
        if not os.path.exists(os.path.join(root, rel)):
            failures.append(f"{rel} (needed by the image build) does not exist")
        if ignored(rel):
            failures.append(f".dockerignore drops {rel}, which the build needs")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    args = parser.parse_args()
    failures = []
    lint(args.root, failures)
    lint_dockerignore(args.root, failures)
    for failure in failures:
        lib.log("FAIL:", failure)
    lib.log("FAILED" if failures else "PASS")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
