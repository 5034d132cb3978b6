"""Shared setup of the `nightshift run` benchmarks: loopback "hosts" served by
OpenSSH's own sshd, throw-away host and client keys, a known_hosts file,
and a nightshift config (inventory, playbooks, schedules) in a work
directory. The same setup as tests/bench/fanout, for any number of
addresses and a chosen login user.
"""

import os
import platform
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
PORT = int(os.environ.get("BENCH_PORT", "2222"))
SSHD_ADDRESSES = 16  # sshd listens on at most 16 addresses (MAX_LISTEN_SOCKS)


def sh(*args, **kw):
    return subprocess.run([str(a) for a in args], check=True, **kw)


def say(what: str, message: str) -> None:
    print(f"[{what}] {message}", file=sys.stderr, flush=True)


def addresses(n: int) -> list:
    """127.0.0.2, 127.0.0.3, ...: n loopback addresses (at most 250)."""
    if not 1 <= n <= 250:
        sys.exit("between 1 and 250 hosts")
    return [f"127.0.0.{i}" for i in range(2, 2 + n)]


def work_dir(prefix: str) -> Path:
    work = Path(tempfile.mkdtemp(prefix=prefix, dir=os.environ.get("BENCH_TMP")))
    os.chmod(work, 0o755)
    return work


def ensure_user(user: str) -> bool:
    """A login user whose shell is /bin/sh, so no shell start-up files are
    timed; True when this run created it (and should remove it)."""
    if user == "root":
        return False
    try:
        pwd.getpwnam(user)
        created = False
    except KeyError:
        sh("useradd", "--create-home", "--shell", "/bin/sh", user)
        created = True
    # No password, but not locked: sshd without PAM refuses locked accounts.
    sh("usermod", "-p", "*", user)
    return created


def remove_user(user: str) -> None:
    """Removes the user this run created; sessions still closing may hold
    it for a moment."""
    for _ in range(20):
        done = subprocess.run(["userdel", "--remove", user], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            pwd.getpwnam(user)
        except KeyError:
            return
        time.sleep(0.5)
    print(f"could not remove the user {user}: {done.stderr.strip()}", file=sys.stderr)


class Loopback:
    """sshd on `hosts` (loopback addresses) at PORT for `user`, with keys and
    known_hosts in `work`. Stop it with stop()."""

    def __init__(self, work: Path, hosts: list, user: str):
        self.work, self.hosts, self.user = work, hosts, user
        self.procs = []
        self.client_key = work / "client"
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bench-client", "-f", self.client_key)
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bench-host", "-f", work / "host")
        shutil.copy(work / "client.pub", work / "authorized_keys")
        os.chmod(work / "authorized_keys", 0o644)
        key = (work / "host.pub").read_text().split()[:2]
        self.known_hosts = work / "known_hosts"
        self.known_hosts.write_text("".join(f"[{h}]:{PORT} {key[0]} {key[1]}\n" for h in hosts))

    def start(self) -> None:
        os.makedirs("/run/sshd", exist_ok=True)
        root = "prohibit-password" if self.user == "root" else "no"
        for n, start in enumerate(range(0, len(self.hosts), SSHD_ADDRESSES)):
            listen = "".join(f"ListenAddress {h}:{PORT}\n" for h in self.hosts[start:start + SSHD_ADDRESSES])
            config = self.work / f"sshd_config.{n}"
            config.write_text(
                f"{listen}HostKey {self.work}/host\nAuthorizedKeysFile {self.work}/authorized_keys\n"
                "PidFile none\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
                f"PermitRootLogin {root}\nStrictModes no\nAllowUsers {self.user}\n"
                "MaxStartups 200\nMaxSessions 20\nUseDNS no\n"
            )
            log = open(self.work / f"sshd.{n}.log", "w")
            self.procs.append(subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(config)], stderr=log))
        deadline = time.monotonic() + 10
        for n, proc in enumerate(self.procs):
            host = self.hosts[n * SSHD_ADDRESSES]
            while True:
                if proc.poll() is not None:
                    self.stop()
                    sys.exit("sshd did not start: " + (self.work / f"sshd.{n}.log").read_text())
                probe = subprocess.run(["ssh", *self.ssh_options(), f"{self.user}@{host}", "true"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                if probe.returncode == 0:
                    break
                if time.monotonic() > deadline:
                    self.stop()
                    sys.exit(f"cannot log in to {host}:{PORT}: " + (self.work / f"sshd.{n}.log").read_text())
                time.sleep(0.2)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs = []

    def ssh_options(self) -> list:
        """The OpenSSH client options every ssh of the benchmarks uses: no
        config file, keys checked against the same known_hosts."""
        return ["-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "IdentitiesOnly=yes",
                "-i", str(self.client_key), "-p", str(PORT)]

    def nightshift_config(self, playbooks: dict) -> tuple:
        """Writes nightshift.toml (inventory, playbooks, schedules), an
        inventory of h00, h01, ... and the playbooks {file stem: TOML text};
        returns (config file, data dir). The data dir holds the same
        known_hosts as the OpenSSH clients use."""
        (self.work / "playbooks").mkdir()
        (self.work / "schedules").mkdir()
        for stem, text in playbooks.items():
            (self.work / "playbooks" / f"{stem}.toml").write_text(text)
        width = max(2, len(str(len(self.hosts) - 1)))
        (self.work / "inventory.toml").write_text("".join(
            f'[hosts.h{i:0{width}d}]\naddress = "{h}"\nport = {PORT}\nuser = "{self.user}"\n'
            f'identity = "{self.client_key}"\n'
            for i, h in enumerate(self.hosts)))
        config = self.work / "nightshift.toml"
        config.write_text('inventory = "inventory.toml"\nplaybooks = "playbooks"\nschedules = "schedules"\n')
        data = self.work / "data"
        self.data_dir(data)
        return config, data

    def data_dir(self, data: Path) -> Path:
        data.mkdir(exist_ok=True)
        shutil.copy(self.known_hosts, data / "known_hosts")
        return data


def build_nightshift(what: str) -> Path:
    """target/release/nightshift, built unless BENCH_BUILD=0; or the binary
    BENCH_NIGHTSHIFT names."""
    prebuilt = os.environ.get("BENCH_NIGHTSHIFT")
    if prebuilt:
        return Path(prebuilt).resolve()
    if os.environ.get("BENCH_BUILD", "1") != "0":
        say(what, "cargo build --release --locked -p nightshift")
        sh("cargo", "build", "--release", "--locked", "-q", "-p", "nightshift", cwd=REPO)
    binary = REPO / "target" / "release" / "nightshift"
    if not binary.exists():
        sys.exit(f"{binary} is missing: build it, or unset BENCH_BUILD")
    return binary


def first_line(argv) -> str:
    try:
        out = subprocess.run([str(a) for a in argv], capture_output=True, text=True)
    except OSError:
        return "?"
    return ((out.stdout or out.stderr).strip().splitlines() or ["?"])[0]


def machine() -> str:
    """CPU model and count, memory, kernel: one line for the report."""
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal"))
    except (OSError, StopIteration):
        mem = 0
    return f"{os.cpu_count()} CPUs ({model}), {mem / (1 << 20):.0f} GiB RAM, Linux {platform.release()}"


def busy() -> list:
    """Build or test processes running now (cargo, rustc, tests/run)."""
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    found = []
    for line in out.splitlines():
        pid, _, args = line.strip().partition(" ")
        words = args.split()
        if not words or int(pid) == os.getpid():
            continue
        name = os.path.basename(words[0])
        if name in ("cargo", "rustc") or any(w.endswith("tests/run") for w in words[:2]):
            found.append(f"{pid} {args[:80]}")
    return found


class Monitor:
    """Looks for build or test processes every 2 s while the benchmark runs,
    so each figure can say whether it was taken on a quiet machine."""

    def __init__(self):
        import threading
        self.seen = []  # (time, [process, ...])
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.watch, daemon=True)
        self.thread.start()

    def watch(self):
        while not self.stop.is_set():
            found = busy()
            if found:
                self.seen.append((time.monotonic(), found))
            self.stop.wait(2)

    def between(self, start: float, end: float) -> list:
        return sorted({p for t, found in self.seen if start <= t <= end for p in found})


MONITOR = None


def machine_cpu() -> float:
    """CPU seconds all processes of the machine have used (/proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def hyperfine(what: str, name: str, argv: list, runs: int, out: Path, warmup=1, prepare=None, env=None) -> dict:
    """One command through hyperfine (no shell; it fails on a non-zero
    exit); its JSON result: median, mean user and system seconds, times;
    plus `machine_cpu`, the whole machine's CPU seconds per run (sshd and
    the remote commands included; prepare commands too), and `busy`, the
    build or test processes seen meanwhile."""
    slug = "".join(c if c.isalnum() else "-" for c in name)[:60]
    export = out / f"hyperfine-{slug}.json"
    command = " ".join(str(a) for a in argv)
    cmd = ["hyperfine", "-N", "--style", "basic", "--runs", str(runs), "--warmup", str(warmup),
           "--export-json", str(export), "-n", name]
    if prepare:
        cmd += ["--prepare", str(prepare)]
    cmd.append(command)
    say(what, f"hyperfine: {name}")
    start, cpu = time.monotonic(), machine_cpu()
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    cpu, end = machine_cpu() - cpu, time.monotonic()
    if done.returncode != 0:
        sys.exit(f"{name} failed:\n{done.stdout[-3000:]}")
    import json
    result = json.loads(export.read_text())["results"][0]
    result["machine_cpu"] = cpu / (runs + warmup)
    result["busy"] = MONITOR.between(start - 2, end + 2) if MONITOR else []
    return result


def gnu_time(argv: list, env=None, cwd=None) -> dict:
    """One run under GNU time: wall, user, system seconds, peak RSS (MiB)."""
    fd, path = tempfile.mkstemp()
    os.close(fd)
    try:
        done = subprocess.run(["/usr/bin/time", "-f", "%e %U %S %M", "-o", path, *map(str, argv)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=cwd)
        if done.returncode != 0:
            sys.exit(f"{argv[:3]} failed:\n{done.stderr.decode(errors='replace')[-3000:]}")
        wall, user, system, rss = Path(path).read_text().split()[-4:]
    finally:
        os.unlink(path)
    return {"wall": float(wall), "user": float(user), "system": float(system), "rss": int(rss) / 1024}


def script(path: Path, text: str) -> Path:
    path.write_text("#!/bin/sh\n" + text)
    path.chmod(0o755)
    return path


def run_events(argv: list, env=None) -> list:
    """`nightshift run ... --json`: its events, one dict each; exits on failure."""
    import json
    done = subprocess.run([*map(str, argv), "--json"], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.exit(f"{argv[:4]} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def median(values):
    import statistics
    return statistics.median(values) if values else 0.0
