//! The VM rig: Debian 12 guests (systemd as PID 1, cgroup v2, Debian's kernel) under qemu,
//! for what only a real host shows (../shared/design/vm-rig.md). The image is built once by
//! tests/vm/image.sh and cached in target/vm/KEY (KEY: a hash of that script, its package list
//! included); each guest boots a copy-on-write overlay of it in its own temp dir, with
//! software emulation (TCG: this machine's /dev/kvm is a nested PVM a stock kernel cannot
//! use), qemu's user network restricted to 198.18.0.0/24, the test's share and
//! ../shared/k8s as 9p shares, and the guest agent as the command channel. A guest is stopped
//! by QMP `quit`, then by the PID qemu wrote: never by name.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::alive;

/// What the VM tests need that a fresh machine may lack (.ci/run installs them).
pub(crate) fn missing() -> Vec<String> {
    let mut why = dmuc_tests::missing_programs(&[
        "qemu-system-x86_64",
        "qemu-img",
        "debootstrap",
        "mkfs.ext4",
    ]);
    if !nix::unistd::geteuid().is_root() {
        why.push("root (debootstrap)".into());
    }
    why
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The built image's directory (base.qcow2, vmlinuz, initrd.img), built under a lock when
/// missing (flock(2) on target/vm/image.lock, which .ci/run's early build holds too): several
/// tests in one run share one build.
pub(crate) fn image() -> PathBuf {
    let script = repo().join("tests/vm/image.sh");
    // The script's SHA-256 (its first 16 hex digits): the key changes with its package list
    // or any step. .ci/run computes the same to build the image beside the compile.
    let sum = Command::new("sha256sum").arg(&script).output().unwrap();
    assert!(sum.status.success(), "sha256sum {}", script.display());
    let key = String::from_utf8_lossy(&sum.stdout)[..16].to_string();
    let vm = repo().join("target/vm");
    std::fs::create_dir_all(&vm).unwrap();
    let dir = vm.join(format!("image-{key}"));
    let lock = std::fs::File::create(vm.join("image.lock")).unwrap();
    let _held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .unwrap();
    if !dir.join("base.qcow2").exists() {
        let t0 = Instant::now();
        let st = Command::new("bash")
            .arg(&script)
            .arg(&dir)
            .status()
            .unwrap();
        assert!(st.success(), "tests/vm/image.sh failed");
        eprintln!("built the guest image in {:?}", t0.elapsed());
    }
    dir
}

/// The guest's share of this machine's CPUs against the rest of a test run. qemu daemonizes
/// into a session of its own, so with the kernel's autogroups (sched(7), on by default) it
/// weighs as much as any one of the other sessions busy beside it. A guest whose Kubernetes
/// gets too little CPU never comes up: under TCG its API server answers slower than its
/// clients' timeouts (the controller manager's 10 s), they crash-loop and waste what CPU it
/// gets, and the test measures the host's load. Its autogroup (or, without autogroups, its
/// threads) at nice -15 weighs 28 sessions at nice 0: what it asks for (up to its 2 vCPUs),
/// the rest going to the other work. At -5 (3 sessions) it got 1.1 to 1.5 CPU-s per second
/// beside CI's compiling and its node never became Ready. Real clusters on the host must not
/// run beside it (they would be the ones starved): the test holds `fixed_ports`, and CI runs
/// only compiling beside it. Best effort: a kernel without either leaves the guest at the
/// default weight, and says so.
fn favour(pid: u32) {
    const NICE: i32 = -15;
    let group = std::fs::write(format!("/proc/{pid}/autogroup"), NICE.to_string()).is_ok();
    let mut threads = 0;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let Some(tid) = t
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<libc::id_t>().ok())
            else {
                continue;
            };
            // SAFETY: setpriority(2) on a thread id; no memory is passed.
            if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, NICE) } == 0 {
                threads += 1;
            }
        }
    }
    if !group && threads == 0 {
        eprintln!("vm: qemu (pid {pid}) left at the default CPU weight: no autogroup, no renice");
    }
}

/// A running guest.
pub(crate) struct Guest {
    dir: tempfile::TempDir,
    pid: u32,
    /// qemu's command line ([`Guest::power_on`]).
    args: Vec<String>,
    /// The directory the guest sees as /mnt/host.
    pub(crate) share: PathBuf,
}

/// How long a (re)boot may take to reach the agent: 14 s quiet, 25–35 s loaded here.
const BOOT: Duration = Duration::from_secs(180);

/// A link between two guests: a datagram socket pair in a directory the test made
/// (qemu's `dgram` netdev: an Ethernet segment of two, no bridge, no host interface).
/// Guest `n` is 198.18.0.1n/24 on it, with hostname `name`, MAC 52:54:00:12:00:0n.
pub(crate) struct Net<'a> {
    pub(crate) link: &'a Path,
    pub(crate) n: u8,
    pub(crate) peer: u8,
    pub(crate) name: &'a str,
}

impl Net<'_> {
    pub(crate) fn ip(&self) -> String {
        format!("198.18.0.{}", 10 + u32::from(self.n))
    }
}

impl Guest {
    /// Boots a guest of the image with `mem_mb` of memory and `smp` CPUs on the link `net`;
    /// `share` is its /mnt/host, ../shared/k8s its /mnt/k8s (read-only, mounted by
    /// [`Guest::mount_shares`]). The guest has the link's address, a default route to
    /// 198.18.0.1 (nobody: a real host has one, and the API server and the kubelet take the
    /// node's address from it) and its name, before anything else runs in it.
    pub(crate) fn boot(mem_mb: u32, smp: u8, net: &Net) -> Guest {
        let image = image();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let share = d.join("share");
        std::fs::create_dir_all(&share).unwrap();
        let overlay = d.join("overlay.qcow2");
        let st = Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
            .arg(image.join("base.qcow2"))
            .arg(&overlay)
            .status()
            .unwrap();
        assert!(st.success(), "qemu-img create");
        let machine_id: String = std::fs::read("/proc/sys/kernel/random/uuid")
            .map(|u| {
                String::from_utf8_lossy(&u)
                    .trim()
                    .replace('-', "")
                    .to_string()
            })
            .unwrap();
        let k8s = crate::realcluster::shared_k8s();
        let path = |p: &Path| p.display().to_string();
        let mut args: Vec<String> = Vec::new();
        let mut arg = |a: &[&str]| args.extend(a.iter().map(|s| s.to_string()));
        arg(&["-machine", "q35,accel=tcg", "-cpu", "max"]);
        arg(&["-smp", &smp.to_string(), "-m", &mem_mb.to_string()]);
        arg(&["-nodefaults", "-display", "none"]);
        arg(&["-kernel", &path(&image.join("vmlinuz"))]);
        arg(&["-initrd", &path(&image.join("initrd.img"))]);
        arg(&[
            "-drive",
            &format!(
                "file={},if=virtio,format=qcow2,cache=unsafe",
                path(&overlay)
            ),
        ]);
        arg(&["-serial", &format!("file:{}", path(&d.join("console.log")))]);
        arg(&[
            "-qmp",
            &format!("unix:{},server=on,wait=off", path(&d.join("qmp.sock"))),
        ]);
        arg(&["-device", "virtio-serial-pci"]);
        arg(&[
            "-chardev",
            &format!(
                "socket,id=qga0,path={},server=on,wait=off",
                path(&d.join("qga.sock"))
            ),
        ]);
        arg(&[
            "-device",
            "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0",
        ]);
        arg(&["-object", "rng-random,id=rng0,filename=/dev/urandom"]);
        arg(&["-device", "virtio-rng-pci,rng=rng0"]);
        let sock = |n: u8| path(&net.link.join(format!("{n}.sock")));
        arg(&[
            "-netdev",
            &format!(
                "dgram,id=n0,local.type=unix,local.path={},remote.type=unix,remote.path={}",
                sock(net.n),
                sock(net.peer)
            ),
        ]);
        arg(&[
            "-device",
            &format!("virtio-net-pci,netdev=n0,mac=52:54:00:12:00:{:02x}", net.n),
        ]);
        arg(&[
            "-virtfs",
            &format!(
                "local,path={},mount_tag=hostshare,security_model=none,id=fs0",
                path(&share)
            ),
        ]);
        arg(&[
            "-virtfs",
            &format!(
                "local,path={},mount_tag=k8s,security_model=none,readonly=on,id=fs1",
                path(&k8s)
            ),
        ]);
        arg(&["-pidfile", &path(&d.join("qemu.pid")), "-daemonize"]);
        arg(&[
            "-append",
            &format!(
                "root=/dev/vda rw console=ttyS0 quiet systemd.firstboot=off systemd.machine_id={machine_id}"
            ),
        ]);
        let mut g = Guest {
            dir,
            pid: 0,
            args,
            share,
        };
        g.power_on();
        // The link's address and the host's name, kept across reboots; the image's DHCP
        // catch-all (99-) comes after this file. Polled for networkd's address and route,
        // with a deadline of its own (30 s) so that nothing is left looping in the guest.
        g.ok(
            &format!(
                "printf '[Match]\\nName=en*\\n[Network]\\nAddress={ip}/24\\nGateway=198.18.0.1\\n' \
                   >/etc/systemd/network/10-link.network && \
                 hostnamectl set-hostname {name} && \
                 sed -i 's/dmuc-vm/{name}/' /etc/hosts && \
                 networkctl reload && networkctl reconfigure $(ls /sys/class/net | grep ^en) && \
                 i=0 && until ip -4 route show default | grep -q 198.18.0.1 && \
                   ip -4 -o addr show | grep -q ' {ip}/24'; do \
                   i=$((i+1)); [ $i -lt 150 ] || {{ echo 'no address within 30 s' >&2; exit 1; }}; \
                   sleep 0.2; done",
                ip = net.ip(),
                name = net.name
            ),
            Duration::from_secs(60),
        );
        g
    }

    /// Starts qemu on the guest's disk, then until its agent answers.
    pub(crate) fn power_on(&mut self) {
        let st = Command::new("qemu-system-x86_64")
            .args(&self.args)
            .status()
            .unwrap();
        assert!(st.success(), "qemu-system-x86_64 did not start");
        self.pid = std::fs::read_to_string(self.sock("qemu.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        favour(self.pid);
        self.wait_agent(BOOT);
    }

    fn sock(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The serial console so far (the kernel's and systemd's boot messages).
    pub(crate) fn console(&self) -> String {
        std::fs::read_to_string(self.sock("console.log")).unwrap_or_default()
    }

    /// One guest-agent command on a connection of its own (the agent serves one client at a
    /// time; a connection held across a reboot hangs), after a sync. `None`: no answer
    /// within `wait`.
    fn agent(&self, cmd: &Value, wait: Duration) -> Option<Value> {
        let mut s = UnixStream::connect(self.sock("qga.sock")).ok()?;
        s.set_read_timeout(Some(wait)).ok()?;
        let id = u64::from(std::process::id()) * 1000 + u64::from(rand_u16());
        let sync = json!({"execute": "guest-sync-delimited", "arguments": {"id": id}});
        s.write_all(format!("{sync}\n").as_bytes()).ok()?;
        let mut r = BufReader::new(s.try_clone().ok()?);
        // Until our sync comes back: a 0xFF delimiter, then its answer.
        loop {
            let mut line = Vec::new();
            r.read_until(b'\n', &mut line).ok()?;
            if line.is_empty() {
                return None;
            }
            let text: Vec<u8> = line.into_iter().filter(|b| *b != 0xFF).collect();
            if let Ok(v) = serde_json::from_slice::<Value>(&text)
                && v["return"] == id
            {
                break;
            }
        }
        s.write_all(format!("{cmd}\n").as_bytes()).ok()?;
        let mut line = String::new();
        r.read_line(&mut line).ok()?;
        serde_json::from_str(&line).ok()
    }

    /// Until the guest agent answers (a boot reached multi-user), or panics at `wait`.
    pub(crate) fn wait_agent(&self, wait: Duration) {
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            assert!(alive(self.pid), "qemu exited; console:\n{}", self.console());
            if self
                .agent(&json!({"execute": "guest-ping"}), Duration::from_secs(3))
                .is_some()
            {
                return;
            }
            // The agent's socket refuses or stays silent until the guest's agent runs: each
            // try waits up to 3 s for an answer, so this loop is paced by that.
            std::thread::sleep(Duration::from_millis(500)); // between tries, under the deadline
        }
        panic!(
            "the guest agent did not answer within {wait:?}; console:\n{}",
            self.console()
        );
    }

    /// Runs `script` with /bin/sh in the guest as root: its exit code, stdout and stderr.
    pub(crate) fn sh(&self, script: &str, wait: Duration) -> (i32, String, String) {
        self.try_sh(script, wait)
            .unwrap_or_else(|e| panic!("{script:?}: {e}"))
    }

    /// [`Guest::sh`], with the agent's silence as an error (a guest rebooting).
    pub(crate) fn try_sh(
        &self,
        script: &str,
        wait: Duration,
    ) -> Result<(i32, String, String), String> {
        let started = self
            .agent(
                &json!({"execute": "guest-exec", "arguments": {
                    "path": "/bin/sh", "arg": ["-c", script], "capture-output": true}}),
                Duration::from_secs(30),
            )
            .ok_or("guest-exec: no answer")?;
        let pid = started["return"]["pid"]
            .as_u64()
            .ok_or_else(|| format!("guest-exec: {started}"))?;
        let deadline = Instant::now() + wait;
        loop {
            let st = self
                .agent(
                    &json!({"execute": "guest-exec-status", "arguments": {"pid": pid}}),
                    Duration::from_secs(30),
                )
                .ok_or("guest-exec-status: no answer")?;
            let r = &st["return"];
            if r["exited"] == true {
                let text = |k: &str| {
                    r[k].as_str()
                        .map(|b| String::from_utf8_lossy(&b64(b)).into_owned())
                        .unwrap_or_default()
                };
                let code = r["exitcode"]
                    .as_i64()
                    .map_or(128 + r["signal"].as_i64().unwrap_or(0), |c| c);
                return Ok((code as i32, text("out-data"), text("err-data")));
            }
            if Instant::now() > deadline {
                return Err(format!("still running after {wait:?}"));
            }
            std::thread::sleep(Duration::from_millis(200)); // polling the agent, under the deadline
        }
    }

    /// [`Guest::sh`] that must succeed: its stdout.
    pub(crate) fn ok(&self, script: &str, wait: Duration) -> String {
        let (code, out, err) = self.sh(script, wait);
        assert_eq!(code, 0, "{script}\nstdout: {out}\nstderr: {err}");
        out
    }

    /// This boot's id (changes at each boot).
    pub(crate) fn boot_id(&self) -> String {
        self.ok(
            "cat /proc/sys/kernel/random/boot_id",
            Duration::from_secs(30),
        )
        .trim()
        .to_string()
    }

    /// `systemctl reboot`, then until the guest is back (a new boot id).
    pub(crate) fn reboot(&self) {
        let before = self.boot_id();
        // The agent may go before it answers: the new boot id tells the reboot happened.
        let _ = self.agent(
            &json!({"execute": "guest-exec", "arguments": {
                "path": "/bin/systemctl", "arg": ["reboot"]}}),
            Duration::from_secs(10),
        );
        let deadline = Instant::now() + BOOT + Duration::from_secs(300);
        loop {
            assert!(alive(self.pid), "qemu exited; console:\n{}", self.console());
            if let Ok((0, id, _)) = self.try_sh(
                "cat /proc/sys/kernel/random/boot_id",
                Duration::from_secs(10),
            ) && id.trim() != before
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the guest did not come back from its reboot; console:\n{}",
                self.console()
            );
            std::thread::sleep(Duration::from_millis(500)); // between tries, under the deadline
        }
    }

    /// Mounts ../shared/k8s at /mnt/k8s (read-only) and the test's share at /mnt/host.
    /// The CPU time qemu has used so far (all its threads: the guest's CPUs and its I/O).
    pub(crate) fn cpu(&self) -> Option<Duration> {
        cpu_used(self.pid)
    }

    pub(crate) fn mount_shares(&self) {
        self.ok(
            "mkdir -p /mnt/k8s && (mountpoint -q /mnt/k8s || mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144 k8s /mnt/k8s) && ls /mnt/host >/dev/null",
            Duration::from_secs(60),
        );
    }
}

/// The CPU time a process has used, from /proc/PID/stat (utime + stime, in clock ticks of
/// 1/100 s, as Linux reports them for every architecture this runs on).
fn cpu_used(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut f = stat.rsplit_once(')')?.1.split_whitespace();
    // After the command: state (field 3), ..., utime (14), stime (15).
    let utime: u64 = f.nth(11)?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

impl Drop for Guest {
    fn drop(&mut self) {
        // What the emulation cost the host (docs/performance.md; CI's budget).
        if let Some(cpu) = cpu_used(self.pid) {
            eprintln!("hosts: qemu {} used {:.0?} of CPU", self.pid, cpu);
        }
        if let Ok(mut s) = UnixStream::connect(self.sock("qmp.sock")) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut greeting = [0u8; 4096];
            let _ = s.read(&mut greeting);
            let _ = s.write_all(b"{\"execute\":\"qmp_capabilities\"}\n{\"execute\":\"quit\"}\n");
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while alive(self.pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50)); // qemu exiting, under the deadline
        }
        if alive(self.pid) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn rand_u16() -> u16 {
    let mut b = [0u8; 2];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut b);
    }
    u16::from_le_bytes(b) % 1000
}

/// Standard base64, as the agent encodes output.
fn b64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for v in s.bytes().filter_map(val) {
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

#[test]
fn base64_as_the_agent_writes_it() {
    assert_eq!(b64("aGVsbG8gd29ybGQK"), b"hello world\n");
    assert_eq!(b64("YQ=="), b"a");
    assert_eq!(b64(""), b"");
}
