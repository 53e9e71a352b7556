"""The hsloth command-line contract, end to end on the built binary.

`hsloth info` is checked against independent sources: the Python torch package the build used, the
`mpirun --version` and `h5dump --version` of the installed tools, and the NCCL header. Errors are checked
for exit codes and for naming the file:line/key with a suggestion.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

BIN = os.environ.get("HSLOTH_BIN", "")
failures = []


def run(*args, env=None):
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=120, env=env)


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def main():
    if not BIN or not os.path.exists(BIN):
        print("hsloth binary not found ($HSLOTH_BIN); skipping")
        return 77
    commands = ["info", "tokenize", "prep", "inspect", "train", "eval", "generate", "merge", "plan"]

    r = run("--help")
    check(r.returncode == 0, "--help exits 0")
    for c in commands:
        check(re.search(rf"^  {c}\s", r.stdout, re.M) is not None, f"--help lists '{c}'")
    not_impl = [c for c in commands if re.search(rf"^  {c}\s.*not implemented yet", r.stdout, re.M)]
    for c in not_impl:
        rc = run(c, "--some-arg").returncode if c != "train" else None
        if rc is not None:
            check(rc == 2, f"not-implemented '{c}' exits 2 (got {rc})")

    r = run()
    check(r.returncode == 2, "no command exits 2")
    r = run("trian")
    check(r.returncode == 2 and "did you mean 'train'" in r.stderr, "unknown command suggests the closest")

    # train's config contract works before the trainer: typos are errors naming file:line and the key.
    with tempfile.TemporaryDirectory() as d:
        ini = os.path.join(d, "run.ini")
        with open(ini, "w") as f:
            f.write("# a run\n[model]\npath = /m\n[data]\ntrain = shards\n[lora]\nrr = 8\n")
        r = run("train", "--config", ini)
        check(r.returncode == 1, f"unknown INI key exits 1 (got {r.returncode})")
        check(f"{ini}:7" in r.stderr and "lora.rr" in r.stderr and "did you mean 'lora.r'" in r.stderr,
              "unknown INI key names file:line and suggests lora.r: " + r.stderr.strip().replace("\n", " | "))
        r = run("train", "--config", ini, "--lora.rr", "3")
        check(r.returncode == 1 and "'--lora.rr'" in r.stderr, "unknown flag is an error")
        r = run("train", "--model.path", "/m", "--data.train", "s", "--train.packing", "pack")
        check(r.returncode == 1 and "did you mean 'packed'" in r.stderr, "bad choice suggests the closest")
        r = run("train", "--model.path", "/m", "--data.train", "s", "--lora.r", "-1")
        check(r.returncode == 1 and "out of range" in r.stderr, "out-of-range value is an error")
        r = run("train", "--help")
        check(r.returncode == 0 and "--train.tokens_per_batch <integer>" in r.stdout and "default: 8192" in r.stdout,
              "train --help documents keys with defaults")

    # every shipped config is valid against the schema and starts with the command that runs it
    src = os.environ.get("HSLOTH_SOURCE", os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    configs = sorted(f for f in os.listdir(os.path.join(src, "configs")) if f.endswith(".ini"))
    check(len(configs) >= 1, f"configs/ has INI files: {configs}")
    for f in configs:
        path = os.path.join(src, "configs", f)
        first = open(path).readline()
        check(first.startswith("# ") and ("hsloth" in first or "launch/" in first), f"{f} starts with its command")
        r = run("train", "--config", path, "--model.path", "/nonexistent/hsloth-config-check")
        check(r.returncode == 1 and "'model.path': " in r.stderr and "not found" in r.stderr and "/nonexistent/hsloth-config-check" in r.stderr,
              f"{f} parses (error only on the model path): " + r.stderr.strip())

    # info: against independent sources.
    r = run("info", "--json")
    check(r.returncode == 0, "info --json exits 0")
    info = json.loads(r.stdout)
    try:
        import torch
        check(info["libtorch"] == torch.__version__.split("+")[0],
              f"LibTorch version {info['libtorch']} == torch {torch.__version__}")
        check(info["cuda_compiled"] == (torch.version.cuda is not None and shutil.which("nvcc") is not None)
              or not info["cuda_compiled"], "CUDA compiled in only with a CUDA torch and nvcc")
        check(info["libtorch_cuda_devices"] == torch.cuda.device_count(),
              f"GPU count {info['libtorch_cuda_devices']} == torch.cuda.device_count()")
        check(len(info["gpus"]) == torch.cuda.device_count(), "listed GPUs == torch.cuda.device_count()")
        for g in info["gpus"]:
            p = torch.cuda.get_device_properties(g["index"])
            check(g["name"] == p.name and g["multiprocessors"] == p.multi_processor_count,
                  f"GPU {g['index']} name/SMs match torch ({p.name})")
    except ImportError:
        print("torch not importable; LibTorch/GPU checks skipped")
    mpirun = shutil.which("mpirun")
    if mpirun:
        v = subprocess.run([mpirun, "--version"], capture_output=True, text=True).stdout
        m = re.search(r"\) (\d+\.\d+\.\d+)", v)
        check(m is not None and m.group(1) in info["mpi"], f"MPI library '{info['mpi'][:40]}' has mpirun's version")
    h5dump = shutil.which("h5dump")
    if h5dump:
        v = subprocess.run([h5dump, "--version"], capture_output=True, text=True).stdout
        m = re.search(r"(\d+\.\d+\.\d+)", v)
        check(m is not None and m.group(1) == info["hdf5"], f"HDF5 {info['hdf5']} == h5dump's {m and m.group(1)}")
    if info["nccl_compiled"]:
        for inc in ["/usr/local/cuda/include/nccl.h", "/usr/include/nccl.h"]:
            if os.path.exists(inc):
                h = open(inc).read()
                ver = ".".join(re.search(rf"#define NCCL_{k} (\d+)", h).group(1) for k in ["MAJOR", "MINOR", "PATCH"])
                check(info["nccl"] == ver, f"NCCL {info['nccl']} == {inc} {ver}")
                break
    check(info["cpu_threads"] == os.cpu_count(), f"CPU threads {info['cpu_threads']} == os.cpu_count()")
    r = run("info")
    check(r.returncode == 0 and "LibTorch" in r.stdout and "HDF5" in r.stdout, "info text output")

    print(f"{len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
