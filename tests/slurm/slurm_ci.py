#!/usr/bin/env python3
"""A real single-node Slurm (Debian slurm-wlm: munged, slurmctld, slurmd with a private config, munge key and
socket, ports, state, spool, TmpFS, logs in a temp dir, and random job ids, so it neither touches a system
Slurm nor a second copy of this test) runs slurm/train.sbatch as users submit it, 2 tasks on the CPU:

1. `sbatch --gpus-per-node=0 --ntasks-per-node=2 --cpus-per-task=1 train.sbatch run.ini` with the default
   launcher (auto: srun --mpi=pmix), submitted from another directory by absolute path with a relative
   config, and with HS_LAUNCHER=mpirun, submitted as `slurm/train.sbatch` from the checkout; then
   slurm/train-multinode.sbatch on --nodes=1. Each job COMPLETED with exit 0, both ranks trained over MPI,
   every step was logged and the final adapter written.
2. Preemption, for both launchers: `scancel --batch --signal=USR1 JOB` (what `--signal=B:USR1@120` sends
   before the time limit) while the job trains: the run checkpoints and exits 75, the script requeues the
   job, Slurm starts it again by itself (Restarts=1), and the requeued run resumes from that checkpoint's step
   (not step 0) and completes: steps 1..N logged exactly once across both runs.
3. `scancel JOB` (SIGTERM) stops the run at a checkpoint and the job stays CANCELLED (not requeued).
4. srun without an MPI plugin (N singletons) is refused instead of N runs on one folder.

Every daemon and process this script starts is stopped at the end, also on failure (pid files, then any
process left with this Slurm's SLURM_CONF in its environment). Exit 77 = skipped: the Slurm/munge binaries
are missing (launch/setup.sh --test-deps installs them) or not root (the private slurmd needs root).
"""
import glob
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
SRC = os.path.abspath(os.environ.get("HSLOTH_SOURCE", os.path.dirname(os.path.dirname(HERE))))
BIN = os.environ.get("HSLOTH_BIN", "")
PY = os.environ.get("HSLOTH_PYTHON", sys.executable)
DAEMONS = ["munged", "slurmctld", "slurmd"]
ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
         "BOOT_FAIL", "DEADLINE"}
failures = []
T_START = time.time()


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)
    return bool(cond)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sh(*cmd, env=None, timeout=60, check_rc=True, cwd=None):
    r = subprocess.run(list(cmd), capture_output=True, text=True, env=env, timeout=timeout, cwd=cwd)
    if check_rc and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stdout}{r.stderr}")
    return r


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


class Slurm:
    def __init__(self, tmp):
        self.t = tmp
        self.node = socket.gethostname().split(".")[0]
        self.env = dict(os.environ, SLURM_CONF=f"{tmp}/slurm.conf")
        for k in [k for k in self.env if k.startswith(("SLURM_", "SBATCH_", "SRUN_", "SALLOC_")) and k != "SLURM_CONF"]:
            del self.env[k]  # a surrounding allocation or the user's defaults must not leak into ours

    def start(self):
        t = self.t
        os.makedirs(f"{t}/munge", mode=0o700)
        os.makedirs(f"{t}/state")
        os.makedirs(f"{t}/spool")
        os.makedirs(f"{t}/tmpfs")  # TmpFS: srun --mpi=pmix puts its per-step directories here, not in /tmp
        with open(f"{t}/munge/munge.key", "wb") as f:
            f.write(os.urandom(1024))
        os.chmod(f"{t}/munge/munge.key", 0o600)
        sh("munged", f"--socket={t}/munge/munge.sock", f"--key-file={t}/munge/munge.key",
           f"--pid-file={t}/munged.pid", f"--log-file={t}/munged.log", f"--seed-file={t}/munge/seed", "--force")
        cpus = os.cpu_count() or 2
        mem = int(read("/proc/meminfo").split()[1]) // 1024 // 2
        # cred_expire: how long a requeued job waits before it may start again (default 120 s; minimum 5).
        conf = f"""ClusterName=hsci
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
AuthType=auth/munge
AuthInfo=socket={t}/munge/munge.sock,cred_expire=10
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
SchedulerParameters=sched_interval=2
KillWait=10
MinJobAge=600
TmpFS={t}/tmpfs
FirstJobId={1000 + int.from_bytes(os.urandom(2), "little") % 50000}
NodeName={self.node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem} State=UNKNOWN
PartitionName=ci Nodes={self.node} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
"""
        with open(f"{t}/slurm.conf", "w") as f:
            f.write(conf)
        sh("slurmctld", env=self.env)
        sh("slurmd", "-N", self.node, env=self.env)
        t0 = time.time()
        r = None
        while time.time() - t0 < 60:
            r = sh("sinfo", "-h", "-o", "%t", env=self.env, check_rc=False)
            if r.returncode == 0 and r.stdout.strip() in ("idle", "mix", "alloc"):
                return
            time.sleep(0.5)
        raise RuntimeError(f"the node did not come up: {r.stdout}{r.stderr}")

    def ours(self):
        """pids of processes (step daemons, ranks) that carry this Slurm's SLURM_CONF, except this one."""
        want = f"SLURM_CONF={self.t}/slurm.conf".encode()
        pids = []
        for p in glob.glob("/proc/[0-9]*/environ"):
            pid = int(p.split("/")[2])
            if pid == os.getpid():
                continue
            try:
                with open(p, "rb") as f:
                    if want in f.read().split(b"\0"):
                        pids.append(pid)
            except OSError:
                pass
        return pids

    def stop(self):
        if not os.path.exists(f"{self.t}/slurm.conf"):
            self._kill_pidfile("munged")
            return
        sh("scancel", "--full", "-u", str(os.geteuid()), env=self.env, check_rc=False)
        t0 = time.time()  # let the jobs end under Slurm's control first
        while time.time() - t0 < 20:
            r = sh("squeue", "-h", "-o", "%i", env=self.env, check_rc=False)
            if r.returncode != 0 or not r.stdout.strip():
                break
            time.sleep(0.5)
        for d in reversed(DAEMONS):
            self._kill_pidfile(d)
        left = self.ours()
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        check(not left, f"no Slurm process left running ({len(left)} killed)" if left
              else "daemons stopped, no Slurm process left running")

    def _kill_pidfile(self, d):
        try:
            pid = int(read(f"{self.t}/{d}.pid").split()[0])
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                os.kill(pid, 0)  # raises once it is gone
                time.sleep(0.05)
            os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            pass

    def job(self, jid):
        r = sh("scontrol", "show", "job", str(jid), env=self.env, check_rc=False)
        return dict(re.findall(r"(\w+)=(\S*)", r.stdout))

    def wait(self, jid, states=ENDED, timeout=240):
        t0 = time.time()
        while time.time() - t0 < timeout:
            j = self.job(jid)
            if j.get("JobState") in states:
                return j
            time.sleep(0.3)
        return self.job(jid)

    def dump_logs(self):
        for f in ("slurmctld.log", "slurmd.log", "munged.log"):
            lines = read(f"{self.t}/{f}").splitlines()
            if lines:
                print(f"---- {f} (last 30 lines)")
                print("\n".join(lines[-30:]))


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


def train_steps(run_dir):
    out = []
    for line in read(f"{run_dir}/metrics.jsonl").splitlines():
        try:
            m = json.loads(line)
        except ValueError:
            continue
        if "loss" in m:
            out.append(m["step"])
    return out


def main():
    missing = [b for b in ("sbatch", "srun", "scontrol", "squeue", "sinfo", "scancel", "slurmctld", "slurmd", "munged")
               if not shutil.which(b)]
    if missing:
        print(f"SKIP: Slurm/munge not installed ({', '.join(missing)} missing; "
              "launch/setup.sh --test-deps installs slurm-wlm and munge)")
        return 77
    if os.geteuid() != 0:
        print("SKIP: the private slurmd must run as root (it starts job steps as the submitting user)")
        return 77
    if not BIN or not os.path.exists(BIN):
        print(f"FAIL: hsloth binary not found ($HSLOTH_BIN={BIN!r})")
        return 1
    BINABS = os.path.abspath(BIN)
    tmp = tempfile.mkdtemp(prefix="hs-slurm-")
    os.chmod(tmp, 0o700)
    slurm = Slurm(tmp)
    outs = []  # job output files, dumped on failure
    try:
        d = f"{tmp}/demo"
        subprocess.run([PY, f"{SRC}/launch/demo/make_demo.py", d, "--model", "--train", "400", "--eval", "20"],
                       check=True, capture_output=True)
        for split in ("train", "eval"):
            sh(BINABS, "prep", "--input", f"{d}/{split}.jsonl", "--tokenizer", f"{d}/model", "--out",
               f"{d}/shards/{split}", "--loss", "response", "--template", "chatml", "--overwrite")
        t0 = time.time()
        slurm.start()
        r = sh("srun", "--mpi=list", env=slurm.env, check_rc=False)
        plugins = sorted(set(re.findall(r"^\s*(\w+)\s*$", r.stdout + r.stderr, re.M)) - {"are"})
        check(True, f"private Slurm up on node {slurm.node} in {time.time() - t0:.1f}s; srun --mpi=list: {' '.join(plugins)}")
        env = dict(slurm.env, HSLOTH=BINABS)
        cpu = ["--gpus-per-node=0", "--ntasks-per-node=2", "--cpus-per-task=1"]
        submit_dir = f"{tmp}/submit"
        os.makedirs(submit_dir)

        def sbatch(name, script, ini, cwd, launcher=None, extra=()):
            out = f"{tmp}/{name}-%j.out"
            e = dict(env, HS_LAUNCHER=launcher) if launcher else env
            r = sh("sbatch", "--parsable", *cpu, *extra, f"--output={out}", script, ini, env=e, cwd=cwd, check_rc=False)
            if not check(r.returncode == 0, f"{name}: sbatch {script} accepted ({(r.stdout + r.stderr).strip()})"):
                return None, ""
            jid = r.stdout.strip().split(";")[0]
            outs.append(out.replace("%j", jid))
            return jid, out.replace("%j", jid)

        # 1. complete jobs: each launcher, and the multi-node script on one node
        plain = [  # name, script as submitted, cwd, launcher, extra sbatch options, via
            ("srun", f"{SRC}/slurm/train.sbatch", submit_dir, None, (), "srun"),
            ("mpirun", "slurm/train.sbatch", SRC, "mpirun", (), "mpirun"),
            ("multinode", f"{SRC}/slurm/train-multinode.sbatch", submit_dir, None, ("--nodes=1",), "srun"),
        ]
        for name, script, cwd, launcher, extra, via in plain:
            run_dir = f"{tmp}/run-{name}"
            write_ini(f"{submit_dir}/{name}.ini", d, run_dir, steps=8)
            ini = f"{name}.ini" if cwd == submit_dir else f"{submit_dir}/{name}.ini"  # relative to the submit dir
            jid, out = sbatch(name, script, ini, cwd, launcher, extra)
            if not jid:
                continue
            t0 = time.time()
            j = slurm.wait(jid)
            log = read(out)
            ok = check(j.get("JobState") == "COMPLETED" and j.get("ExitCode") == "0:0",
                       f"{name}: job {jid} {j.get('JobState')} exit {j.get('ExitCode')} in {time.time() - t0:.1f}s")
            ok &= check(f"2 ranks via {via}" in log and "communicator: MPI (2 ranks" in log,
                        f"{name}: 2 ranks started by {via}, training data-parallel over MPI")
            steps = train_steps(run_dir)
            ok &= check(steps == list(range(1, 9)) and os.path.exists(f"{run_dir}/final/adapter_model.safetensors"),
                        f"{name}: steps {steps[:1]}..{steps[-1:]} logged, final/adapter_model.safetensors written")
            if not ok:
                print(log[-3000:])

        # 2. preemption: USR1 to the batch script -> checkpoint, exit 75, requeue, resume, complete
        total = 80
        for launcher in ("srun", "mpirun"):
            name = f"preempt-{launcher}"
            run_dir = f"{tmp}/run-{name}"
            write_ini(f"{submit_dir}/{name}.ini", d, run_dir, steps=total, ckpt_every=5)
            jid, out = sbatch(name, f"{SRC}/slurm/train.sbatch", f"{name}.ini", submit_dir, launcher)
            if not jid:
                continue
            t0 = time.time()
            while time.time() - t0 < 120 and not any(s >= 3 for s in train_steps(run_dir)) \
                    and slurm.job(jid).get("JobState") not in ENDED:
                time.sleep(0.1)
            seen = max(train_steps(run_dir) or [0])
            sh("scancel", "--batch", "--signal=USR1", jid, env=slurm.env, check_rc=False)
            t0 = time.time()
            while time.time() - t0 < 120 and slurm.job(jid).get("Restarts", "0") == "0" \
                    and slurm.job(jid).get("JobState") not in ENDED:
                time.sleep(0.2)
            j = slurm.job(jid)
            check(j.get("Restarts") == "1", f"{name}: USR1 after step {seen}: job {jid} requeued "
                  f"(Restarts={j.get('Restarts')}, {j.get('JobState')}, eligible {j.get('EligibleTime')})")
            j = slurm.wait(jid, timeout=240)  # Slurm starts the requeued job by itself (cred_expire later)
            log = read(out)
            ok = check(j.get("JobState") == "COMPLETED" and j.get("ExitCode") == "0:0" and j.get("Restarts") == "1",
                       f"{name}: requeued job {jid} {j.get('JobState')} exit {j.get('ExitCode')} "
                       f"({time.time() - t0:.1f}s after the signal)")
            m = re.search(r"stop requested \(signal\): checkpointing at step (\d+)", log)
            stop = int(m.group(1)) if m else -1
            ok &= check(m is not None and stop >= 3 and re.search(rf"checkpoint \S*/checkpoints/step-{stop} ", log)
                        and "requeueing job" in log,
                        f"{name}: SIGUSR1 reached the ranks: checkpoint step-{stop}, exit 75, scontrol requeue")
            m = re.search(r"resumed from (\S*step-(\d+))", log)
            ok &= check("(restart 1)" in log and m is not None and int(m.group(2)) == stop,
                        f"{name}: the requeued run (restart 1) resumed from {m.group(1) if m else 'nothing'}")
            steps = train_steps(run_dir)
            ok &= check(steps == list(range(1, total + 1))
                        and os.path.exists(f"{run_dir}/final/adapter_model.safetensors"),
                        f"{name}: steps 1..{stop} then {stop + 1}..{total} logged once each "
                        f"({len(steps)} lines), final adapter written")
            if not ok:
                print(log[-4000:])

        # 3. scancel (SIGTERM): the run checkpoints and stops; the job is not requeued
        name = "cancel"
        run_dir = f"{tmp}/run-{name}"
        write_ini(f"{submit_dir}/{name}.ini", d, run_dir, steps=total)
        jid, out = sbatch(name, f"{SRC}/slurm/train.sbatch", f"{name}.ini", submit_dir)
        if jid:
            t0 = time.time()
            while time.time() - t0 < 120 and not any(s >= 3 for s in train_steps(run_dir)) \
                    and slurm.job(jid).get("JobState") not in ENDED:
                time.sleep(0.1)
            sh("scancel", jid, env=slurm.env, check_rc=False)
            t0 = time.time()  # until the batch script has ended (squeue lists the job while it completes)
            while time.time() - t0 < 60 and sh("squeue", "-h", "-j", jid, env=slurm.env, check_rc=False).stdout.strip():
                time.sleep(0.2)
            time.sleep(4)  # a requeue would show by now
            j = slurm.job(jid)
            log = read(out)
            m = re.search(r"stop requested \(signal\): checkpointing at step (\d+)", log)
            if not check(j.get("JobState") == "CANCELLED" and j.get("Restarts") == "0" and "not requeued" in log
                         and m is not None and os.path.exists(f"{run_dir}/checkpoints/step-{m.group(1)}"),
                         f"{name}: scancel -> checkpoint step-{m.group(1) if m else '?'}, job {j.get('JobState')}, "
                         f"Restarts={j.get('Restarts')} (not requeued)"):
                print(log[-3000:])

        # 4. srun without an MPI plugin starts singletons: refused, nothing trained
        write_ini(f"{tmp}/single.ini", d, f"{tmp}/run-single", steps=2)
        r = sh("srun", "--mpi=none", "-n", "2", "--gpus-per-node=0", BINABS, "train", "--config", f"{tmp}/single.ini",
               env=slurm.env, check_rc=False, timeout=120)
        # Open MPI refuses a direct launch without PMI itself; other MPIs start singletons, which hsloth refuses.
        said = r.stdout + r.stderr
        if not check(r.returncode != 0 and ("srun did not connect them" in said or 'launched using "srun"' in said)
                     and not os.path.exists(f"{tmp}/run-single/metrics.jsonl"),
                     f"srun --mpi=none -n 2 is refused, nothing trained (exit {r.returncode})"):
            print(said[-3000:])
    except Exception as e:  # noqa: BLE001
        check(False, f"unexpected: {type(e).__name__}: {e}")
    finally:
        if failures:
            slurm.dump_logs()
            for o in outs:
                print(f"---- {os.path.basename(o)} (last 40 lines)")
                print("\n".join(read(o).splitlines()[-40:]))
        try:
            slurm.stop()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"{len(failures)} failure(s)" if failures else "all checks passed", f"in {time.time() - T_START:.0f}s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
