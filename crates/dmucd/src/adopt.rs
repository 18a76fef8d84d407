//! Adoption: what a dmucd records so that the next one can take over the running components
//! instead of restarting them, and how it checks that a process is still the one it recorded
//! (PID plus the kernel's start time, so a reused PID is never mistaken for ours).

use std::path::Path;
use std::time::{Duration, Instant};

use dmuc_config::Component;
use dmuc_core::ExitStatus;
use serde::{Deserialize, Serialize};

/// `<runtime dir>/adopt.json`, rewritten at once after every batch of changes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Record {
    /// The daemon that wrote it.
    pub daemon_pid: u32,
    /// One entry per component.
    pub components: Vec<CompRecord>,
}

/// What the next daemon needs to know of a component.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CompRecord {
    /// Name.
    pub name: String,
    /// Current run number.
    pub run: u64,
    /// Main process, while it runs.
    pub pid: Option<u32>,
    /// Its start time, in clock ticks after boot (/proc/PID/stat field 22).
    pub start: Option<u64>,
    /// [`definition_hash`] of the definition it was launched with.
    pub hash: String,
    /// Restarts by policy so far.
    pub restarts: u32,
    /// State name.
    pub state: dmuc_proto::State,
    /// How the run before this one ended (absent in records of older dmucd versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<ExitRecord>,
}

/// [`ExitStatus`] as the record stores it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ExitRecord {
    /// Exited with this status code.
    Code(i32),
    /// Killed by this signal.
    Signal {
        /// Signal number.
        signal: i32,
        /// A core was dumped.
        core: bool,
    },
    /// Could not be started or observed.
    Lost(String),
}

impl From<&ExitStatus> for ExitRecord {
    fn from(e: &ExitStatus) -> Self {
        match e {
            ExitStatus::Code(c) => ExitRecord::Code(*c),
            ExitStatus::Signal { signal, core } => ExitRecord::Signal {
                signal: *signal,
                core: *core,
            },
            ExitStatus::Lost(w) => ExitRecord::Lost(w.clone()),
        }
    }
}

impl From<ExitRecord> for ExitStatus {
    fn from(e: ExitRecord) -> Self {
        match e {
            ExitRecord::Code(c) => ExitStatus::Code(c),
            ExitRecord::Signal { signal, core } => ExitStatus::Signal { signal, core },
            ExitRecord::Lost(w) => ExitStatus::Lost(w),
        }
    }
}

impl CompRecord {
    /// Its recorded process still runs: the same PID with the same kernel start time.
    pub fn still_running(&self) -> bool {
        match (self.pid, self.start) {
            (Some(pid), Some(start)) => start_ticks(pid) == Some(start),
            _ => false,
        }
    }
}

impl Record {
    /// The entry of `name`.
    pub fn get(&self, name: &str) -> Option<&CompRecord> {
        self.components.iter().find(|c| c.name == name)
    }
}

/// Reads the record a previous daemon left, if any.
pub fn read(path: &Path) -> Option<Record> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// A process's start time (clock ticks after boot), from /proc.
pub fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    // After ')': state is field 3, so starttime (field 22) is the 20th here.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// When a process that started `ticks` clock ticks after boot was launched, as an
/// [`Instant`]: its age is the system's uptime less that (both count from boot).
pub fn launched_at(ticks: u64, now: Instant) -> Option<Instant> {
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok()??;
    let age = uptime - ticks as f64 / hz as f64;
    now.checked_sub(Duration::from_secs_f64(age.max(0.0)))
}

/// A stable digest of what a launch depends on (argv, environment, directory, identity,
/// kind, stop scope): equal digests mean a running process still matches its definition.
/// FNV-1a over a canonical text: stable across dmucd versions, unlike std's hasher.
pub fn definition_hash(c: &Component) -> String {
    let mut text = String::new();
    for a in &c.command {
        text.push_str(a);
        text.push('\0');
    }
    text.push('\u{1}');
    let mut env: Vec<_> = c.env.iter().collect();
    env.sort();
    for (k, v) in env {
        text.push_str(k);
        text.push('=');
        text.push_str(v);
        text.push('\0');
    }
    text.push('\u{1}');
    // The file's name, not its contents: a changed file needs a restart, as in systemd.
    // Nothing without one, so that the digests of earlier definitions stay as they were.
    for (key, f) in [("", &c.env_file), ("args:", &c.args_file)] {
        if let Some(f) = f {
            let dash = if f.optional { "-" } else { "" };
            text.push_str(&format!("{key}{dash}{}", f.path.display()));
            text.push('\u{1}');
        }
    }
    for o in [
        &c.cwd.as_ref().map(|p| p.display().to_string()),
        &c.user,
        &c.group,
    ] {
        text.push_str(o.as_deref().unwrap_or("-"));
        text.push('\0');
    }
    text.push_str(&format!("{:?}\0{:?}", c.kind, c.stop.scope));
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comp(toml: &str) -> Component {
        dmuc_config::parse_config(toml, Path::new("t.toml"), &|_| None)
            .unwrap()
            .graph
            .components()[0]
            .clone()
    }

    #[test]
    fn the_hash_follows_what_a_launch_uses() {
        let a = comp("[component.a]\ncommand = [\"x\", \"1\"]\n");
        let same =
            comp("[component.a]\ncommand = [\"x\", \"1\"]\nready = { tcp = \"127.0.0.1:1\" }\n");
        let other = comp("[component.a]\ncommand = [\"x\", \"2\"]\n");
        let env = comp("[component.a]\ncommand = [\"x\", \"1\"]\nenv = { A = \"1\" }\n");
        assert_eq!(
            definition_hash(&a),
            definition_hash(&same),
            "a probe does not change the process"
        );
        assert_ne!(definition_hash(&a), definition_hash(&other));
        assert_ne!(definition_hash(&a), definition_hash(&env));
        assert_eq!(definition_hash(&a).len(), 16);
        let file = comp("[component.a]\ncommand = [\"x\", \"1\"]\nenv-file = \"/e\"\n");
        let optional = comp("[component.a]\ncommand = [\"x\", \"1\"]\nenv-file = \"-/e\"\n");
        assert_ne!(definition_hash(&a), definition_hash(&file));
        assert_ne!(definition_hash(&file), definition_hash(&optional));
        let args = comp("[component.a]\ncommand = [\"x\", \"1\"]\nargs-file = \"/e\"\n");
        assert_ne!(definition_hash(&a), definition_hash(&args));
        assert_ne!(definition_hash(&file), definition_hash(&args));
        // Stable across versions: a dmucd that knows env-file adopts what an older one
        // started (the digest of a definition without one is what it always was).
        assert_eq!(definition_hash(&a), "71ff3cdb36ec4fb1");
    }

    #[test]
    fn start_time_of_a_live_process() {
        let me = std::process::id();
        let t = start_ticks(me).unwrap();
        assert_eq!(start_ticks(me), Some(t), "stable");
        let child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let c = start_ticks(child.id()).unwrap();
        assert!(c >= t);
        let mut child = child;
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(start_ticks(child.id()), None);
    }
}
