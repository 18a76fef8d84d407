//! What differs between the Kubernetes releases dmuc supports (1.20 to 1.36), as data: one
//! table ([`ROWS`]), read by `dmucctl k8s-release` to write the flags and configuration lines
//! the binaries at hand take, by `doctor` to say which release it found, and printed in
//! docs/kubernetes-versions.md. Pure: the versions and the host's facts come in, settings
//! come out; the command around it runs `--version` and writes the files.

use std::fmt;

/// The oldest and newest minor releases of Kubernetes 1.x the profiles are written for.
pub const OLDEST: u32 = 20;
pub const NEWEST: u32 = 36;

/// A Kubernetes release, `v1.MINOR.PATCH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub minor: u32,
    pub patch: u32,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v1.{}.{}", self.minor, self.patch)
    }
}

/// The version in what `kubelet --version` or `kube-apiserver --version` prints
/// (`Kubernetes v1.20.2`, `Kubernetes v1.36.2-dirty`, `Kubernetes v1.31.0-rc.1`).
pub fn parse_version(text: &str) -> Option<Version> {
    let word = text
        .split_whitespace()
        .find(|w| w.starts_with("v1.") || w.starts_with("1."))?;
    let mut parts = word.trim_start_matches('v').splitn(3, '.');
    if parts.next()? != "1" {
        return None;
    }
    let minor = parts.next()?.parse().ok()?;
    let patch: String = parts
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Some(Version {
        minor,
        patch: patch.parse().ok()?,
    })
}

/// Whether the profiles support `v`; the error says the range.
pub fn supported(v: Version) -> Result<(), String> {
    if (OLDEST..=NEWEST).contains(&v.minor) {
        Ok(())
    } else {
        Err(format!(
            "Kubernetes {v} is not supported: dmuc's profiles are written for 1.{OLDEST} to 1.{NEWEST} \
             (docs/kubernetes-versions.md); install a release in that range (dmucctl fetch --kubernetes 1.{NEWEST})"
        ))
    }
}

/// Which program's version decides a row: a node's settings follow its kubelet, the control
/// plane's its API server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Program {
    Kubelet,
    ApiServer,
}

impl Program {
    pub fn name(self) -> &'static str {
        match self {
            Program::Kubelet => "kubelet",
            Program::ApiServer => "kube-apiserver",
        }
    }
}

/// Where a row's value goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Arguments of the kubelet (one per line of `kubelet.args`, the profile's `args-file`).
    KubeletArgs,
    /// Lines of the KubeletConfiguration (`$KUBELET_CONFIG_RELEASE` in the profiles).
    KubeletConfig,
    /// The KubeSchedulerConfiguration's `apiVersion` (`$KUBE_SCHEDULER_CONFIG_API`).
    SchedulerConfigApi,
}

/// One difference between releases: from `since` to `until` (minor versions, inclusive),
/// `value` goes to `target`. `{socket}`, `{fail-cgroup-v1}` and `{pod-logs}` in it are the
/// node's. Rows of one target with disjoint ranges say what each range takes; a release no
/// row of a target covers takes nothing there.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    pub what: &'static str,
    pub program: Program,
    pub target: Target,
    pub since: u32,
    pub until: u32,
    pub value: &'static str,
    /// Why, and how it was checked.
    pub why: &'static str,
}

/// Every difference between 1.20 and 1.36 the profiles meet.
pub const ROWS: &[Row] = &[
    Row {
        what: "kubelet: the container runtime, by flags",
        program: Program::Kubelet,
        target: Target::KubeletArgs,
        since: 20,
        until: 26,
        value: "--container-runtime=remote\n--container-runtime-endpoint=unix://{socket}",
        why: "before 1.24 the kubelet defaults to its built-in Docker support (v1.20.2 from Debian's source, built without it, exits: \"trying to use docker runtime when Kubelet was compiled without docker support\"); --container-runtime was removed in 1.27, and the KubeletConfiguration has no endpoint field before it",
    },
    Row {
        what: "kubelet: the pause image, kept from image garbage collection",
        program: Program::Kubelet,
        target: Target::KubeletArgs,
        since: 20,
        until: 26,
        value: "--pod-infra-container-image={pause-image}",
        why: "before 1.27 the kubelet does not read the sandbox image's pinned mark from the runtime; it names the image containerd's sandbox_image already is",
    },
    Row {
        what: "kubelet: the container runtime, in the configuration file",
        program: Program::Kubelet,
        target: Target::KubeletConfig,
        since: 27,
        until: NEWEST,
        value: "containerRuntimeEndpoint: unix://{socket}",
        why: "KubeletConfiguration.containerRuntimeEndpoint exists from 1.27 (the flag is deprecated)",
    },
    Row {
        what: "kubelet: pod logs directory",
        program: Program::Kubelet,
        target: Target::KubeletConfig,
        since: 30,
        until: NEWEST,
        value: "podLogsDir: {pod-logs}",
        why: "KubeletConfiguration.podLogsDir exists from 1.30 (kubernetes/kubernetes#112957); older kubelets write /var/log/pods, so a profile asking for another directory is refused there",
    },
    Row {
        what: "kubelet: running on cgroup v1",
        program: Program::Kubelet,
        target: Target::KubeletConfig,
        since: 31,
        until: NEWEST,
        value: "failCgroupV1: {fail-cgroup-v1}",
        why: "KubeletConfiguration.failCgroupV1 exists from 1.31 and defaults to true from 1.35: false on a cgroup v1 host, true on v2; older kubelets run on v1 without it",
    },
    Row {
        what: "kube-scheduler: configuration API",
        program: Program::ApiServer,
        target: Target::SchedulerConfigApi,
        since: 20,
        until: 21,
        value: "kubescheduler.config.k8s.io/v1beta1",
        why: "v1.20.2 refuses kubescheduler.config.k8s.io/v1 (checked here); v1beta1 is served 1.19 to 1.21",
    },
    Row {
        what: "kube-scheduler: configuration API",
        program: Program::ApiServer,
        target: Target::SchedulerConfigApi,
        since: 22,
        until: 22,
        value: "kubescheduler.config.k8s.io/v1beta2",
        why: "v1beta2 is served 1.22 to 1.27 (v1beta1 is gone from 1.23)",
    },
    Row {
        what: "kube-scheduler: configuration API",
        program: Program::ApiServer,
        target: Target::SchedulerConfigApi,
        since: 23,
        until: 24,
        value: "kubescheduler.config.k8s.io/v1beta3",
        why: "v1beta3 is served 1.23 to 1.28 (v1beta2 is deprecated from 1.25)",
    },
    Row {
        what: "kube-scheduler: configuration API",
        program: Program::ApiServer,
        target: Target::SchedulerConfigApi,
        since: 25,
        until: NEWEST,
        value: "kubescheduler.config.k8s.io/v1",
        why: "v1 from 1.25; the betas are gone from 1.29",
    },
];

/// What the node is, for the values that depend on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// containerd's socket.
    pub socket: String,
    /// The pause image containerd runs pods' sandboxes with.
    pub pause_image: String,
    /// The kubelet's pod logs directory (`None`: the kubelet's default, /var/log/pods).
    pub pod_logs: Option<String>,
    /// The host runs the unified cgroup hierarchy.
    pub cgroup_v2: bool,
    /// The cgroup driver containerd's runc and the kubelet share ([`cgroup_driver`]).
    pub cgroup_driver: Driver,
}

/// Who makes the pods' cgroups: systemd (transient slices and scopes over D-Bus) or the
/// programs themselves, writing /sys/fs/cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Driver {
    Systemd,
    Cgroupfs,
}

impl Driver {
    pub fn name(self) -> &'static str {
        match self {
            Driver::Systemd => "systemd",
            Driver::Cgroupfs => "cgroupfs",
        }
    }
}

/// The driver for a host: the one asked for, else systemd's where systemd runs the host (it
/// owns the cgroup tree there, and a second manager of one tree is what the kubelet's docs
/// warn against), cgroupfs elsewhere (no systemd as PID 1: containers, this project's CI).
pub fn cgroup_driver(asked: Option<Driver>, systemd_runs_host: bool) -> Driver {
    asked.unwrap_or(if systemd_runs_host {
        Driver::Systemd
    } else {
        Driver::Cgroupfs
    })
}

/// The versions found: the kubelet's and the API server's, where the profile has them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Found {
    pub kubelet: Option<Version>,
    pub apiserver: Option<Version>,
}

/// What a release takes, per target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    pub kubelet_args: Vec<String>,
    pub kubelet_config: Vec<String>,
    pub scheduler_config_api: Option<String>,
    /// The node's cgroup driver (`$CGROUP_DRIVER`, and `$SYSTEMD_CGROUP` for runc).
    pub cgroup_driver: Option<Driver>,
    /// The rows applied, for the operator.
    pub applied: Vec<String>,
}

/// The default pod logs directory of every kubelet.
pub const DEFAULT_POD_LOGS: &str = "/var/log/pods";

/// The settings for what was found on `node`; an unsupported release, or something this
/// release cannot do that the profile asks for, is an error.
pub fn settings(found: Found, node: &Node) -> Result<Settings, String> {
    if found.kubelet.is_none() && found.apiserver.is_none() {
        return Err("found neither a kubelet nor a kube-apiserver".into());
    }
    for (p, v) in [
        ("kubelet", found.kubelet),
        ("kube-apiserver", found.apiserver),
    ] {
        if let Some(v) = v {
            supported(v).map_err(|e| format!("{p}: {e}"))?;
        }
    }
    if let (Some(k), Some(a)) = (found.kubelet, found.apiserver) {
        // The version skew policy: a kubelet may be older than its API server, never newer.
        if k.minor > a.minor {
            return Err(format!(
                "the kubelet ({k}) is newer than the API server ({a}): Kubernetes supports kubelets up to the API server's minor release, not newer"
            ));
        }
    }
    check_node(found, node)?;
    let mut out = Settings {
        cgroup_driver: Some(node.cgroup_driver),
        ..Settings::default()
    };
    for row in ROWS {
        let v = match row.program {
            Program::Kubelet => found.kubelet,
            Program::ApiServer => found.apiserver.or(found.kubelet),
        };
        let Some(v) = v else { continue };
        if !(row.since..=row.until).contains(&v.minor) {
            continue;
        }
        let Some(value) = fill(row, node) else {
            continue;
        };
        match row.target {
            Target::KubeletArgs => out.kubelet_args.extend(value.lines().map(str::to_string)),
            Target::KubeletConfig => out.kubelet_config.extend(value.lines().map(str::to_string)),
            Target::SchedulerConfigApi => out.scheduler_config_api = Some(value.clone()),
        }
        out.applied.push(format!(
            "{} ({}): {}",
            row.what,
            v,
            value.replace('\n', " ")
        ));
    }
    Ok(out)
}

/// A row's value for this node; `None` when it has nothing to say here (a pod logs directory
/// that is the default).
fn fill(row: &Row, node: &Node) -> Option<String> {
    if row.value.contains("{pod-logs}")
        && node
            .pod_logs
            .as_deref()
            .is_none_or(|d| d == DEFAULT_POD_LOGS)
    {
        return None;
    }
    Some(
        row.value
            .replace("{socket}", &node.socket)
            .replace("{pause-image}", &node.pause_image)
            .replace("{pod-logs}", node.pod_logs.as_deref().unwrap_or(""))
            .replace(
                "{fail-cgroup-v1}",
                if node.cgroup_v2 { "true" } else { "false" },
            ),
    )
}

/// What a kubelet older than 1.30 cannot do that the node asks for.
fn check_node(found: Found, node: &Node) -> Result<(), String> {
    if let (Some(k), Some(dir)) = (found.kubelet, &node.pod_logs)
        && k.minor < 30
        && dir != DEFAULT_POD_LOGS
    {
        return Err(format!(
            "the kubelet {k} writes pod logs to {DEFAULT_POD_LOGS} only (podLogsDir is 1.30 and later): set pod-logs = \"{DEFAULT_POD_LOGS}\" or bind-mount {dir} there"
        ));
    }
    Ok(())
}

/// A value for a POSIX shell, in single quotes.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `release.env`: the settings as shell variables for the profiles' configuration writers.
pub fn env_file(found: Found, s: &Settings) -> String {
    let mut out = String::from(
        "# Written by dmucctl k8s-release from the binaries' --version: what this Kubernetes release takes.\n",
    );
    let v = found.kubelet.or(found.apiserver).map(|v| v.to_string());
    out += &format!("KUBE_VERSION={}\n", sh_quote(&v.unwrap_or_default()));
    out += &format!(
        "KUBE_SCHEDULER_CONFIG_API={}\n",
        sh_quote(s.scheduler_config_api.as_deref().unwrap_or(""))
    );
    out += &format!(
        "KUBELET_CONFIG_RELEASE={}\n",
        sh_quote(&s.kubelet_config.join("\n"))
    );
    let driver = s.cgroup_driver.unwrap_or(Driver::Cgroupfs);
    out += &format!("CGROUP_DRIVER={}\n", driver.name());
    out += &format!("SYSTEMD_CGROUP={}\n", driver == Driver::Systemd);
    out
}

/// `kubelet.args`: one argument per line.
pub fn args_file(s: &Settings) -> String {
    let mut out = String::from(
        "# Written by dmucctl k8s-release: the kubelet's flags for this Kubernetes release.\n",
    );
    for a in &s.kubelet_args {
        out += a;
        out.push('\n');
    }
    out
}

/// The table as Markdown (docs/kubernetes-versions.md holds it; a test keeps the two equal).
pub fn markdown_table() -> String {
    let mut out =
        String::from("| what | releases | the profile writes | why |\n|---|---|---|---|\n");
    for r in ROWS {
        let range = if r.since == r.until {
            format!("1.{}", r.since)
        } else {
            format!("1.{} – 1.{}", r.since, r.until)
        };
        let value = r.value.replace('\n', "` `");
        out += &format!(
            "| {} (by the {}'s version) | {range} | `{value}` | {} |\n",
            r.what,
            r.program.name(),
            r.why.replace('|', "\\|")
        );
    }
    out
}

pub mod cmd;
pub use cmd::{ReleaseArgs, found_in, run};

#[cfg(test)]
mod tests;
