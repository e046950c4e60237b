#!/usr/bin/env python3
"""One file per benchmark run, never overwritten, and a pointer to the
newest of each kind.

Every bench script writes its results through `write()`: a new file
`bench/results/runs/<UTC date>-<kind>-<HHMMSS>.md` (and `.json` beside it
when there is data), opened with exclusive create so an existing run is
never replaced, headed by what produced it:

    - run: 2026-12-02T18:30:12Z, instructions
    - script: bench/instructions.py
    - command: python3 bench/instructions.py --baseline ...
    - machine: Intel Xeon (model "Intel(R) Xeon(R) Processor", 2 CPUs (nproc), kernel 6.18.44)
    - commit: 1234abc (with uncommitted changes)

    ---

then `bench/results/LATEST` gets the line `<kind> runs/<file>` (the only
file that is rewritten). `bench/check_figures.py` reads the header: the
text citing a run must name its `script` and its machine (the part of
`machine` before the parenthesis).

Runs restored from git history carry the same header with `source:`
naming the commit, and `machine: not recorded` when the file did not
say.

To record what a command prints (micro-benchmarks, the fuzzer, the
memory probes):

    python3 bench/record.py micro --script "cargo bench --bench micro" -- \\
        cargo bench --bench micro -- --warm-up-time 1 --measurement-time 3
    python3 bench/record.py fuzz --script fuzz/run.sh -- bash fuzz/run.sh 300
    python3 bench/record.py cache-memory --script bench/cache_memory.rs -- \\
        target/release/examples/cache_memory
"""
import argparse
import datetime
import json
import os
import platform
import re
import shlex
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results")
RUNS = os.path.join(RESULTS, "runs")
LATEST = os.path.join(RESULTS, "LATEST")
LATEST_HEAD = ("# The newest run of each kind: <kind> <file under bench/results/>.\n"
               "# Written by bench/record.py after each run; run files are never rewritten.\n")


def _output(argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True, cwd=ROOT).stdout.strip()
    except OSError:
        return ""


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_label(model):
    """'Intel(R) Xeon(R) Processor' -> 'Intel Xeon', 'AMD EPYC 7B13' -> 'AMD EPYC':
    the short name the docs use beside a figure."""
    words = re.sub(r"\((R|TM|tm)\)", "", model).split()
    return " ".join(words[:2]) or "unknown"


def machine():
    model = cpu_model()
    nproc = _output(["nproc"]) or str(os.cpu_count())
    kernel = _output(["uname", "-r"]) or platform.release()
    return {"label": machine_label(model), "cpu": model, "cpus": nproc, "kernel": kernel,
            "rustc": _output(["rustc", "--version"]), "python": platform.python_version()}


def commit():
    sha = _output(["git", "rev-parse", "--short", "HEAD"])
    if not sha:
        return "unknown (not a git checkout)"
    dirty = _output(["git", "status", "--porcelain", "--untracked-files=no"])
    return sha + (" (with uncommitted changes)" if dirty else " (working tree clean)")


def header(kind, script, command, when, m):
    return (f"- run: {when}, {kind}\n"
            f"- script: {script}\n"
            f"- command: {command}\n"
            f"- machine: {m['label']} (model \"{m['cpu']}\", {m['cpus']} CPUs (nproc), "
            f"kernel {m['kernel']}, {m['rustc']}, Python {m['python']})\n"
            f"- commit: {commit()}\n\n---\n\n")


def point_latest(kind, relpath):
    lines = []
    if os.path.exists(LATEST):
        with open(LATEST) as f:
            lines = [l for l in f.read().splitlines() if l and not l.startswith("#")]
    lines = [l for l in lines if l.split()[0] != kind] + [f"{kind} {relpath}"]
    tmp = LATEST + ".tmp"
    with open(tmp, "w") as f:
        f.write(LATEST_HEAD + "\n".join(sorted(lines)) + "\n")
    os.replace(tmp, LATEST)


def write(kind, script, text, data=None, ext="md", command=None):
    """Writes a new run file (never an existing one), its JSON beside it
    when `data` is given, and points LATEST at it. Returns the path."""
    now = datetime.datetime.now(datetime.timezone.utc)
    when = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    stem = f"{now:%Y-%m-%d}-{kind}-{now:%H%M%S}"
    os.makedirs(RUNS, exist_ok=True)
    path = os.path.join(RUNS, f"{stem}.{ext}")
    command = command or shlex.join([os.path.basename(sys.executable)] + sys.argv)
    body = header(kind, script, command, when, machine())
    if data is not None:
        body = body.replace("\n\n---\n\n", f"\n- data: runs/{stem}.json\n\n---\n\n", 1)
    # "x": fails rather than replace a run written the same second.
    with open(path, "x") as f:
        f.write(body + text.rstrip("\n") + "\n")
    if data is not None:
        with open(os.path.join(RUNS, f"{stem}.json"), "x") as f:
            json.dump(data, f, indent=2)
    point_latest(kind, os.path.relpath(path, RESULTS))
    print(f"\nwrote {os.path.relpath(path, ROOT)} (bench/results/LATEST: {kind})")
    return path


def main():
    argv = sys.argv[1:]
    if "--" not in argv:
        sys.exit("usage: bench/record.py KIND [--script NAME] -- COMMAND [ARGS...]")
    cut = argv.index("--")
    ap = argparse.ArgumentParser(description="Run a command and record what it prints as a run file.")
    ap.add_argument("kind", help="the run's kind, e.g. micro, fuzz, cache-memory")
    ap.add_argument("--script", help="what produced it, as the docs name it (default: the command)")
    args = ap.parse_args(argv[:cut])
    command = argv[cut + 1:]
    if not command:
        ap.error("no command given after --")
    proc = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    sys.stdout.write(proc.stdout)
    if proc.returncode != 0:
        sys.exit(f"{shlex.join(command)} exited with {proc.returncode}; nothing recorded")
    write(args.kind, args.script or shlex.join(command), proc.stdout, ext="txt",
          command=shlex.join(command))


if __name__ == "__main__":
    main()
