#!/usr/bin/env python3
"""A real single-node Slurm (Debian slurm-wlm: munged, slurmctld, slurmd, private config in a temp dir) runs
slurm/train.sbatch as users submit it, 2 tasks on CPU:

1. `sbatch slurm/train.sbatch run.ini` (GPU request overridden on the command line) with the default
   launcher (srun --mpi=pmix) and with HS_LAUNCHER=mpirun: the job completes with exit 0, both ranks train
   over MPI, every step is logged and the final adapter is written.
2. Preemption: `scancel --batch --signal=USR1` (what `#SBATCH --signal=B:USR1@120` sends before the time
   limit) while the job trains: the run checkpoints and exits 75, the script requeues the job, and the
   requeued run resumes from that checkpoint (not step 0) and completes.
3. `srun` without an MPI plugin (N singletons) is refused with a hint instead of N runs on one folder.

Every daemon this script starts is stopped at the end, also on failure. Exit 77 = skipped (Slurm or munge
not installed, or not root: the daemons need it).
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("HSLOTH_SOURCE", os.path.dirname(os.path.dirname(HERE)))
BIN = os.environ.get("HSLOTH_BIN", "")
PY = os.environ.get("HSLOTH_PYTHON", sys.executable)
failures = []
DAEMONS = ["munged", "slurmctld", "slurmd"]


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)
    return cond


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sh(*cmd, env=None, timeout=60, check_rc=True):
    r = subprocess.run(list(cmd), capture_output=True, text=True, env=env, timeout=timeout)
    if check_rc and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stdout}{r.stderr}")
    return r


class Slurm:
    def __init__(self, tmp):
        self.t = tmp
        self.node = socket.gethostname().split(".")[0]
        self.env = dict(os.environ, SLURM_CONF=f"{tmp}/slurm.conf")
        for k in [k for k in self.env if k.startswith("SLURM_") and k != "SLURM_CONF"]:
            del self.env[k]  # a surrounding allocation must not leak into ours

    def start(self):
        t = self.t
        os.makedirs(f"{t}/munge", mode=0o700)
        os.makedirs(f"{t}/state")
        os.makedirs(f"{t}/spool")
        with open(f"{t}/munge/munge.key", "wb") as f:
            f.write(os.urandom(1024))
        os.chmod(f"{t}/munge/munge.key", 0o600)
        sh("munged", f"--socket={t}/munge/munge.sock", f"--key-file={t}/munge/munge.key",
           f"--pid-file={t}/munged.pid", f"--log-file={t}/munged.log", f"--seed-file={t}/munge/seed", "--force")
        cpus = os.cpu_count() or 2
        mem = int(open("/proc/meminfo").read().split()[1]) // 1024 // 2
        conf = f"""ClusterName=hsci
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
AuthType=auth/munge
AuthInfo=socket={t}/munge/munge.sock
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation={t}/state
SlurmdSpoolDir={t}/spool
SlurmctldPidFile={t}/slurmctld.pid
SlurmdPidFile={t}/slurmd.pid
SlurmctldLogFile={t}/slurmctld.log
SlurmdLogFile={t}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
SchedulerType=sched/builtin
MinJobAge=600
NodeName={self.node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem} State=UNKNOWN
PartitionName=ci Nodes={self.node} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
"""
        with open(f"{t}/slurm.conf", "w") as f:
            f.write(conf)
        sh("slurmctld", env=self.env)
        sh("slurmd", "-N", self.node, env=self.env)
        t0 = time.time()
        while time.time() - t0 < 60:
            r = sh("sinfo", "-h", "-o", "%t", env=self.env, check_rc=False)
            if r.returncode == 0 and r.stdout.strip() in ("idle", "mix", "alloc"):
                return
            time.sleep(0.5)
        raise RuntimeError(f"the node did not come up: {r.stdout}{r.stderr}")

    def stop(self):
        sh("scancel", "--full", "-u", "root", env=self.env, check_rc=False)
        for d in reversed(DAEMONS):
            try:
                pid = int(open(f"{self.t}/{d}.pid").read().split()[0])
                os.kill(pid, signal.SIGTERM)
                for _ in range(100):
                    os.kill(pid, 0)
                    time.sleep(0.05)
                os.kill(pid, signal.SIGKILL)
            except (OSError, ValueError):
                pass

    def job(self, jid):
        r = sh("scontrol", "show", "job", str(jid), env=self.env, check_rc=False)
        return dict(re.findall(r"(\w+)=(\S*)", r.stdout))

    def wait(self, jid, states, timeout=300):
        t0 = time.time()
        while time.time() - t0 < timeout:
            j = self.job(jid)
            if j.get("JobState") in states:
                return j
            time.sleep(0.5)
        return self.job(jid)

    def dump_logs(self):
        for f in ("slurmctld.log", "slurmd.log", "munged.log"):
            p = f"{self.t}/{f}"
            if os.path.exists(p):
                print(f"---- {f} (tail)")
                print("".join(open(p).readlines()[-25:]))


def write_ini(path, d, run_dir, steps, ckpt_every=0):
    with open(path, "w") as f:
        f.write(f"""finetune = lora
[model]
path = {d}/model
[data]
train = {d}/shards/train
eval = {d}/shards/eval
[run]
dir = {run_dir}
[train]
max_steps = {steps}
tokens_per_batch = 512
lr = 1e-3
[ckpt]
every = {ckpt_every}
[log]
every = 1
""")


def metrics(run_dir):
    p = f"{run_dir}/metrics.jsonl"
    if not os.path.exists(p):
        return []
    return [json.loads(x) for x in open(p) if x.strip()]


def main():
    missing = [b for b in ("sbatch", "slurmctld", "slurmd", "munged", "scontrol") if not shutil.which(b)]
    if missing:
        print(f"SKIP: Slurm/munge not installed ({', '.join(missing)} missing; launch/setup.sh --test-deps installs them)")
        return 77
    if os.geteuid() != 0:
        print("SKIP: the private slurmctld/slurmd need root")
        return 77
    if not BIN or not os.path.exists(BIN):
        print(f"FAIL: hsloth binary not found ($HSLOTH_BIN={BIN!r})")
        return 1
    tmp = tempfile.mkdtemp(prefix="hs-slurm-")
    os.chmod(tmp, 0o700)
    slurm = Slurm(tmp)
    try:
        d = f"{tmp}/demo"
        subprocess.run([PY, f"{SRC}/launch/demo/make_demo.py", d, "--model", "--train", "400", "--eval", "16"],
                       check=True, capture_output=True)
        for split in ("train", "eval"):
            sh(BIN, "prep", "--input", f"{d}/{split}.jsonl", "--tokenizer", f"{d}/model", "--out",
               f"{d}/shards/{split}", "--loss", "response", "--template", "chatml")
        t0 = time.time()
        slurm.start()
        check(True, f"private Slurm up on node {slurm.node} ({time.time() - t0:.1f}s)")
        env = dict(slurm.env, HSLOTH=BIN)
        submit = ["sbatch", "--parsable", "--gpus-per-node=0", "--ntasks-per-node=2", "--cpus-per-task=1"]

        # 1. a job, with each launcher
        for launcher in ("auto", "mpirun"):
            run_dir = f"{tmp}/run-{launcher}"
            write_ini(f"{tmp}/{launcher}.ini", d, run_dir, steps=8)
            out = f"{tmp}/{launcher}-%j.out"
            r = sh(*submit, f"--output={out}", "slurm/train.sbatch", f"{tmp}/{launcher}.ini",
                   env=dict(env, HS_LAUNCHER=launcher), check_rc=False)
            if not check(r.returncode == 0, f"sbatch accepted the {launcher} job ({r.stdout.strip()}{r.stderr.strip()})"):
                continue
            jid = r.stdout.strip().split(";")[0]
            t0 = time.time()
            j = slurm.wait(jid, {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"})
            log = open(out.replace("%j", jid)).read() if os.path.exists(out.replace("%j", jid)) else ""
            via = "srun" if launcher == "auto" else "mpirun"
            ok = check(j.get("JobState") == "COMPLETED" and j.get("ExitCode") == "0:0",
                       f"{launcher}: job {jid} {j.get('JobState')} exit {j.get('ExitCode')} in {time.time() - t0:.1f}s")
            check(f"2 ranks via {via}" in log and "communicator: MPI (2 ranks" in log,
                  f"{launcher}: 2 ranks started by {via}, training over MPI")
            steps = [m["step"] for m in metrics(run_dir) if "loss" in m]
            check(steps == list(range(1, 9)) and os.path.exists(f"{run_dir}/final/adapter_model.safetensors"),
                  f"{launcher}: steps {steps[:1]}..{steps[-1:]} logged, final adapter written")
            if not ok:
                print(log[-3000:])

        # 2. preemption: USR1 to the batch script -> checkpoint, exit 75, requeue, resume
        run_dir = f"{tmp}/run-preempt"
        write_ini(f"{tmp}/preempt.ini", d, run_dir, steps=60)
        out = f"{tmp}/preempt-%j.out"
        jid = sh(*submit, f"--output={out}", "slurm/train.sbatch", f"{tmp}/preempt.ini", env=env).stdout.strip()
        out = out.replace("%j", jid)
        t0 = time.time()
        while time.time() - t0 < 120 and not any(m.get("step", 0) >= 3 and "loss" in m for m in metrics(run_dir)):
            time.sleep(0.1)
        sh("scancel", "--batch", "--signal=USR1", jid, env=slurm.env)
        t0 = time.time()
        while time.time() - t0 < 120 and slurm.job(jid).get("Restarts", "0") == "0":
            time.sleep(0.2)
        j = slurm.job(jid)
        check(j.get("Restarts") == "1", f"job {jid} requeued after the signal (Restarts={j.get('Restarts')})")
        # Slurm holds a requeued job back for a while (its begin time); let the killed batch step finish on the
        # node (slurmd refuses to relaunch a job it is still killing), then let it start now.
        t0 = time.time()
        while time.time() - t0 < 60 and slurm.job(jid).get("JobState") != "PENDING":
            time.sleep(0.2)
        print(f"     requeued: {slurm.job(jid).get('JobState')}, begin time {slurm.job(jid).get('StartTime')}")
        time.sleep(5)
        sh("scontrol", "update", f"JobId={jid}", "StartTime=now", env=slurm.env, check_rc=False)
        j = slurm.wait(jid, {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"}, timeout=300)
        log = open(out).read() if os.path.exists(out) else ""
        ok = check(j.get("JobState") == "COMPLETED" and j.get("ExitCode") == "0:0",
                   f"requeued job {jid} {j.get('JobState')} exit {j.get('ExitCode')}")
        m = re.search(r"stop requested \(signal\): checkpointing at step (\d+)", log)
        stop_step = int(m.group(1)) if m else -1
        check(m is not None and "requeueing job" in log and stop_step >= 3,
              f"SIGUSR1 reached the run: checkpoint at step {stop_step}, exit 75, requeue")
        ok &= check("(restart 1)" in log and f"step-{stop_step}" in log and "resumed from" in log,
                    f"the requeued run resumed from step-{stop_step}")
        steps = [x["step"] for x in metrics(run_dir) if "loss" in x]
        ok &= check(steps and steps[-1] == 60 and sorted(set(steps)) == list(range(1, 61)),
                    f"every step 1..60 logged across both runs (last {steps[-1:]})")
        if not ok:
            print(log[-4000:])

        # 3. srun without an MPI plugin starts singletons: refused
        write_ini(f"{tmp}/single.ini", d, f"{tmp}/run-single", steps=2)
        r = sh("srun", "--mpi=none", "-n", "2", "--gpus-per-node=0", BIN, "train", "--config", f"{tmp}/single.ini",
               env=slurm.env, check_rc=False, timeout=120)
        # Open MPI refuses a direct launch without PMI itself; other MPIs start singletons, which hsloth refuses.
        said = r.stdout + r.stderr
        if not check(r.returncode != 0 and ("srun did not connect them" in said or 'launched using "srun"' in said)
                     and not os.path.exists(f"{tmp}/run-single/metrics.jsonl"),
                     f"srun --mpi=none -n 2 is refused, nothing trained (exit {r.returncode})"):
            print(r.stdout[-2000:], r.stderr[-2000:])
    except Exception as e:  # noqa: BLE001
        check(False, f"unexpected: {e}")
    finally:
        if failures:
            slurm.dump_logs()
        slurm.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{len(failures)} failure(s)" if failures else "all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
