//! `dmucctl k8s-release`: run the binaries' `--version`, apply the table, write the files.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{Found, Node, Version};

#[derive(clap::Args, Debug)]
pub struct ReleaseArgs {
    /// Where the Kubernetes binaries are (the profile's `bin`).
    #[arg(long, value_name = "DIR", required_unless_present = "table")]
    bin: Option<PathBuf>,
    /// Write release.env (shell variables for the configuration files) and kubelet.args (the
    /// kubelet's args-file) here; without it, only print what this release takes.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// containerd's socket.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/run/containerd/containerd.sock"
    )]
    containerd_socket: String,
    /// The pause image containerd's sandbox_image names.
    #[arg(
        long,
        value_name = "IMAGE",
        default_value = "registry.k8s.io/pause:3.10"
    )]
    pause_image: String,
    /// The kubelet's pod logs directory.
    #[arg(long, value_name = "DIR", default_value = super::DEFAULT_POD_LOGS)]
    pod_logs: String,
    /// The cgroup driver of containerd's runc and the kubelet (`$CGROUP_DRIVER` and
    /// `$SYSTEMD_CGROUP` in release.env): by default systemd's where systemd runs the host,
    /// cgroupfs elsewhere.
    #[arg(long, value_name = "DRIVER")]
    cgroup_driver: Option<super::Driver>,
    /// Print the table of what differs by release (docs/kubernetes-versions.md) and exit.
    #[arg(long)]
    table: bool,
}

/// What `PROG --version` says, when the program is there; an error when it is there and
/// does not say a version.
pub fn version_of(prog: &Path) -> Result<Option<Version>, String> {
    if !prog.exists() {
        return Ok(None);
    }
    let o = Command::new(prog)
        .arg("--version")
        .output()
        .map_err(|e| format!("{} --version: {e}", prog.display()))?;
    let text =
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    super::parse_version(&text).map(Some).ok_or_else(|| {
        format!(
            "{} --version printed no Kubernetes version: {:?}",
            prog.display(),
            text.trim()
        )
    })
}

/// The kubelet's and the API server's versions in `bin`.
pub fn found_in(bin: &Path) -> Result<Found, String> {
    Ok(Found {
        kubelet: version_of(&bin.join("kubelet"))?,
        apiserver: version_of(&bin.join("kube-apiserver"))?,
    })
}

pub fn run(a: ReleaseArgs) -> u8 {
    if a.table {
        print!("{}", super::markdown_table());
        return 0;
    }
    match write(&a) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("dmucctl k8s-release: {e}");
            1
        }
    }
}

fn write(a: &ReleaseArgs) -> Result<(), String> {
    let bin = a.bin.as_deref().unwrap_or(Path::new("/usr/local/bin"));
    let found = found_in(bin)?;
    let node = Node {
        socket: a.containerd_socket.clone(),
        pause_image: a.pause_image.clone(),
        pod_logs: Some(a.pod_logs.clone()),
        cgroup_v2: Path::new("/sys/fs/cgroup/cgroup.controllers").exists(),
        // sd_booted(3): systemd is PID 1.
        cgroup_driver: super::cgroup_driver(
            a.cgroup_driver,
            Path::new("/run/systemd/system").is_dir(),
        ),
    };
    let s = super::settings(found, &node)
        .map_err(|e| format!("{e} (binaries in {})", bin.display()))?;
    for (p, v) in [
        ("kubelet", found.kubelet),
        ("kube-apiserver", found.apiserver),
    ] {
        if let Some(v) = v {
            println!(
                "{p} {v} in {}: supported (1.{} to 1.{})",
                bin.display(),
                super::OLDEST,
                super::NEWEST
            );
        }
    }
    for line in &s.applied {
        println!("  {line}");
    }
    println!(
        "cgroup driver: {} ({})",
        node.cgroup_driver.name(),
        match (a.cgroup_driver, node.cgroup_driver) {
            (Some(_), _) => "--cgroup-driver",
            (None, super::Driver::Systemd) => "systemd runs this host",
            (None, super::Driver::Cgroupfs) => "systemd does not run this host",
        }
    );
    if let Some(out) = &a.out {
        std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
        put(&out.join("release.env"), &super::env_file(found, &s))?;
        put(&out.join("kubelet.args"), &super::args_file(&s))?;
        println!("wrote {}/release.env and kubelet.args", out.display());
    }
    Ok(())
}

/// Replace `path` with `text` in one step (a kubelet starting meanwhile reads the old or the
/// new file, never half of one).
fn put(path: &Path, text: &str) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| format!("{}: {e}", path.display()))
}
