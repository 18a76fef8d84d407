//! `dmucctl backup` and `dmucctl restore`: an etcd snapshot taken through the running etcd,
//! with a checksum beside it; and its restore, which stops what depends on etcd in order,
//! swaps the data directory (the old one is kept) and brings the cluster back. etcd's own
//! tools do the snapshot work (etcdctl; etcdutl where etcd ≥ 3.5 ships it), found beside the
//! etcd the component runs, else on `PATH`. What etcd's flags mean is in [`crate::etcd`].

use std::path::{Path, PathBuf};
use std::process::Command;

use dmuc_client::{CallError, Client, FAILED, OK, report};
use dmuc_proto::{Action, ComponentSpec, GraphResult, ShowResult, StatusResult, Verb};

use crate::etcd::{self, Member, Tls};

/// `dmucctl backup`'s arguments.
#[derive(clap::Args, Debug)]
pub struct BackupArgs {
    /// The snapshot file to write (its checksum goes to FILE.sha256).
    pub file: PathBuf,
    /// The component that runs etcd [default: the one whose program is `etcd`].
    #[arg(long, value_name = "NAME")]
    pub component: Option<String>,
    /// etcd's client URL [default: from the component's flags]; without dmucd, with
    /// --cacert, --cert and --key as needed.
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// CA of etcd's serving certificate [default: its --trusted-ca-file].
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,
    /// Client certificate [default: etcd's --cert-file].
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// Client key [default: etcd's --key-file].
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Replace FILE if it exists.
    #[arg(long)]
    pub force: bool,
}

/// `dmucctl restore`'s arguments.
#[derive(clap::Args, Debug)]
pub struct RestoreArgs {
    /// A snapshot written by `dmucctl backup` (or `etcdctl snapshot save` with a
    /// `sha256sum` of it in FILE.sha256).
    pub file: PathBuf,
    /// The component that runs etcd [default: the one whose program is `etcd`].
    #[arg(long, value_name = "NAME")]
    pub component: Option<String>,
    /// Check the snapshot and print what would be stopped, swapped and started; change
    /// nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// How long stopping, then starting, may take, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub timeout: u64,
}

/// What a step failed with, said once by the command.
type Step<T> = Result<T, String>;

/// etcd's component as dmucd runs it, and the member it runs.
struct Etcd {
    spec: ComponentSpec,
    member: Member,
}

fn call_err(e: &CallError) -> String {
    match e {
        CallError::Unreachable { path, err } => {
            format!("dmucd is not reachable at {} ({err})", path.display())
        }
        CallError::Remote(r) => r.message.clone(),
        CallError::Broken(s) => s.clone(),
    }
}

/// The etcd component of the running graph (`show`), read as a member.
fn etcd_of(c: &mut Client, wanted: Option<&str>) -> Step<Etcd> {
    let all: ShowResult = c
        .call_as(Verb::Show { names: vec![] })
        .map_err(|e| call_err(&e))?;
    let commands: Vec<(String, Vec<String>)> = all
        .components
        .iter()
        .map(|s| (s.name.clone(), s.command.clone()))
        .collect();
    let name = etcd::find_component(&commands, wanted)?;
    let spec = all
        .components
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| format!("no component named {name}"))?;
    // What etcd reads from its env-file counts as it would (the file's values win).
    let mut env = spec.env.clone();
    if let Some(f) = &spec.env_file {
        let (path, optional) = f
            .strip_prefix('-')
            .map_or((f.as_str(), false), |p| (p, true));
        match std::fs::read_to_string(path) {
            Ok(text) => {
                for (k, v) in dmuc_config::parse_env_file(&text)
                    .map_err(|e| format!("{name}'s env-file {path}: {e}"))?
                {
                    env.retain(|(ek, _)| *ek != k);
                    env.push((k, v));
                }
            }
            Err(e) if optional && e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{name}'s env-file {path}: {e}")),
        }
    }
    let member = etcd::member(&spec.command, &env, Path::new(&spec.cwd))
        .map_err(|e| format!("{name}: {e}"))?;
    Ok(Etcd { spec, member })
}

/// etcd's tool `name`: beside the etcd program, else on `PATH`.
fn tool(etcd_prog: Option<&str>, name: &str) -> Option<PathBuf> {
    let beside = etcd_prog
        .map(Path::new)
        .filter(|p| p.is_absolute())
        .and_then(Path::parent)
        .map(|d| d.join(name));
    beside.filter(|p| p.is_file()).or_else(|| {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
    })
}

/// Runs one of etcd's tools; its stderr's last lines on failure.
fn run(prog: &Path, args: &[String]) -> Step<String> {
    let o = Command::new(prog)
        .args(args)
        // etcdctl 3.4 speaks v3 by default, 3.3 and older only with this.
        .env("ETCDCTL_API", "3")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", prog.display()))?;
    if o.status.success() {
        return Ok(String::from_utf8_lossy(&o.stdout).into_owned());
    }
    let err = String::from_utf8_lossy(&o.stderr);
    let tail: Vec<&str> = err.lines().rev().take(5).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Err(format!(
        "{} {} failed ({}):\n{}",
        prog.display(),
        args.first().map_or("", String::as_str),
        o.status,
        tail.join("\n")
    ))
}

/// The hex SHA-256 of a file.
fn sha256(file: &Path) -> Step<String> {
    crate::fetch::digest_of(file, 64)
}

fn checksum_file(file: &Path) -> PathBuf {
    let mut s = file.as_os_str().to_owned();
    s.push(".sha256");
    PathBuf::from(s)
}

/// `snapshot status -w json` of a snapshot or a data directory's db: revision, keys, size.
fn summary(prog: &Path, db: &Path) -> Step<String> {
    let out = run(
        prog,
        &[
            "snapshot".into(),
            "status".into(),
            db.display().to_string(),
            "-w".into(),
            "json".into(),
        ],
    )?;
    let v: serde_json::Value =
        serde_json::from_str(out.trim()).map_err(|e| format!("snapshot status: {e}: {out}"))?;
    Ok(format!(
        "revision {}, {} keys, {}",
        v["revision"],
        v["totalKey"],
        size(v["totalSize"].as_u64().unwrap_or(0))
    ))
}

fn size(b: u64) -> String {
    match b {
        0..1_000_000 => format!("{:.1} kB", b as f64 / 1e3),
        _ => format!("{:.1} MB", b as f64 / 1e6),
    }
}

/// `dmucctl backup`.
pub fn backup(socket: &Path, a: BackupArgs) -> u8 {
    match take(socket, &a) {
        Ok(line) => {
            println!("{line}");
            OK
        }
        Err(e) => {
            eprintln!("dmucctl: backup: {e}");
            FAILED
        }
    }
}

fn take(socket: &Path, a: &BackupArgs) -> Step<String> {
    if a.file.exists() && !a.force {
        return Err(format!(
            "{} exists: choose another file, or pass --force to replace it",
            a.file.display()
        ));
    }
    // From the running graph, unless everything was given.
    let from_graph = match &a.endpoint {
        Some(_) => None,
        None => {
            let mut c = Client::connect(socket).map_err(|e| {
                format!(
                    "{}: start it, or give --endpoint (and --cacert, --cert, --key)",
                    call_err(&e)
                )
            })?;
            Some(etcd_of(&mut c, a.component.as_deref())?)
        }
    };
    let (endpoint, tls, prog) = match &from_graph {
        Some(e) => (
            e.member.endpoint.clone(),
            e.member.tls.clone(),
            e.spec.command.first().cloned(),
        ),
        None => (a.endpoint.clone().unwrap_or_default(), Tls::default(), None),
    };
    let tls = Tls {
        ca: a.cacert.clone().or(tls.ca),
        cert: a.cert.clone().or(tls.cert),
        key: a.key.clone().or(tls.key),
    };
    let etcdctl = tool(prog.as_deref(), "etcdctl").ok_or(
        "etcdctl is neither beside etcd nor on PATH (Debian: etcd-client; or dmucctl fetch --etcd)",
    )?;
    if let Some(dir) = a.file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let mut args = vec![format!("--endpoints={endpoint}")];
    args.extend(tls.args());
    args.extend([
        "snapshot".into(),
        "save".into(),
        a.file.display().to_string(),
    ]);
    run(&etcdctl, &args)?;
    // The snapshot holds every Secret of the cluster.
    std::fs::set_permissions(&a.file, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .map_err(|e| format!("{}: {e}", a.file.display()))?;
    let what = summary(&status_tool(prog.as_deref(), &etcdctl), &a.file)?;
    // After `status`: the digest is of the file as it stays.
    let hex = sha256(&a.file)?;
    let sum = checksum_file(&a.file);
    std::fs::write(&sum, etcd::checksum_line(&hex, &a.file))
        .map_err(|e| format!("{}: {e}", sum.display()))?;
    Ok(format!(
        "saved {} from {endpoint}: {what}\nsha256 {hex} in {}",
        a.file.display(),
        sum.display()
    ))
}

/// etcdutl where there is one (etcd ≥ 3.5 moved the offline snapshot commands there; 3.6
/// removed them from etcdctl), else etcdctl.
fn status_tool(etcd_prog: Option<&str>, etcdctl: &Path) -> PathBuf {
    tool(etcd_prog, "etcdutl").unwrap_or_else(|| etcdctl.to_path_buf())
}

/// A UTC time with these separators: `("", "")` for file names (20261203T083000Z), `("-",
/// ":")` for RFC 3339 (2026-12-03T08:30:00Z).
pub(crate) fn utc(t: time::OffsetDateTime, date: &str, clock: &str) -> String {
    format!(
        "{:04}{date}{:02}{date}{:02}T{:02}{clock}{:02}{clock}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// A UTC time stamp for file names: 20261203T083000Z.
fn stamp() -> String {
    utc(time::OffsetDateTime::now_utc(), "", "")
}

/// `path` + `suffix`, beside it.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Gives `dir` and everything in it to the owner of the data directory it replaces (etcd
/// may run as its own user).
fn chown_like(dir: &Path, like: &Path) -> Step<()> {
    use std::os::unix::fs::MetadataExt;
    let Ok(m) = std::fs::metadata(like) else {
        return Ok(());
    };
    fn walk(p: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
        std::os::unix::fs::lchown(p, Some(uid), Some(gid))?;
        if std::fs::symlink_metadata(p)?.is_dir() {
            for e in std::fs::read_dir(p)? {
                walk(&e?.path(), uid, gid)?;
            }
        }
        Ok(())
    }
    walk(dir, m.uid(), m.gid())
        .map_err(|e| format!("cannot give {} to uid {}: {e}", dir.display(), m.uid()))
}

/// `dmucctl restore`.
pub fn restore(socket: &Path, a: RestoreArgs) -> u8 {
    let mut c = match Client::connect(socket) {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "dmucctl: restore: {}: it must run, to stop and start what depends on etcd \
                 (dmucd --hold starts nothing)",
                call_err(&e)
            );
            return dmuc_client::UNREACHABLE;
        }
    };
    match put_back(&mut c, &a) {
        Ok(()) => OK,
        Err(Failure::Said(e)) => {
            eprintln!("dmucctl: restore: {e}");
            FAILED
        }
        Err(Failure::Call(e)) => report(&e),
    }
}

enum Failure {
    Said(String),
    Call(CallError),
}

impl From<String> for Failure {
    fn from(s: String) -> Failure {
        Failure::Said(s)
    }
}

impl From<&str> for Failure {
    fn from(s: &str) -> Failure {
        Failure::Said(s.into())
    }
}

fn put_back(c: &mut Client, a: &RestoreArgs) -> Result<(), Failure> {
    // 1. The file is the one that was saved.
    let sum = checksum_file(&a.file);
    let text = std::fs::read_to_string(&sum).map_err(|e| {
        format!(
            "{}: {e}: the snapshot's checksum is needed (dmucctl backup writes it; for a \
             snapshot you trust: sha256sum FILE > FILE.sha256)",
            sum.display()
        )
    })?;
    let want = etcd::parse_checksum(&text, &a.file)?;
    let got = sha256(&a.file)?;
    if got != want {
        return Err(format!(
            "{} is not the snapshot that was saved: its SHA-256 is {got}, {} says {want}; \
             nothing was changed",
            a.file.display(),
            sum.display()
        )
        .into());
    }
    // 2. What runs etcd, and what depends on it.
    let e = etcd_of(c, a.component.as_deref())?;
    e.member.single()?;
    let graph: GraphResult = c.call_as(Verb::Graph {}).map_err(Failure::Call)?;
    let states: StatusResult = c
        .call_as(Verb::Status {
            names: vec![],
            text: None,
        })
        .map_err(Failure::Call)?;
    let plan = etcd::plan(&graph, &states.components, &e.spec.name);
    let prog = e.spec.command.first().cloned();
    let etcdctl = tool(prog.as_deref(), "etcdctl");
    let restorer = tool(prog.as_deref(), "etcdutl")
        .or(etcdctl)
        .ok_or("neither etcdutl nor etcdctl is beside etcd or on PATH (Debian: etcd-client)")?;

    // 3. The snapshot restored into a new directory beside the data directory: a snapshot
    // that does not restore stops nothing.
    let data = &e.member.data_dir;
    let ts = stamp();
    let fresh = sibling(data, &format!(".restore-{ts}"));
    let kept = sibling(data, &format!(".before-restore-{ts}"));
    if let Err(err) = run(&restorer, &e.member.restore_args(&a.file, &fresh)) {
        let _ = std::fs::remove_dir_all(&fresh);
        return Err(format!("the snapshot does not restore; nothing was changed: {err}").into());
    }
    let cleanup = |why: String| -> Failure {
        let _ = std::fs::remove_dir_all(&fresh);
        Failure::Said(why)
    };
    let what = summary(&restorer, &fresh.join("member/snap/db")).map_err(&cleanup)?;
    println!("snapshot {}: checksum ok, {what}", a.file.display());
    println!(
        "etcd member {} ({}), data directory {}",
        e.member.name,
        e.spec.name,
        data.display()
    );
    println!("stop, in order:  {}", plan.stop.join(", "));
    if data.exists() {
        println!("keep the current data as {}", kept.display());
    }
    println!("start again:     {}", plan.start.join(", "));
    if a.dry_run {
        let _ = std::fs::remove_dir_all(&fresh);
        println!("dry run: nothing was changed");
        return Ok(());
    }
    if !a.yes && !crate::host::confirm("Restore etcd from this snapshot?") {
        return Err(cleanup("nothing was changed".into()));
    }
    chown_like(&fresh, data).map_err(&cleanup)?;

    // 4. Stop etcd: dmucd stops what depends on it first, in order.
    let timeout_ms = Some(a.timeout.saturating_mul(1000));
    let action = |names: Vec<String>| Action {
        names,
        wait: true,
        timeout_ms,
    };
    if let Err(err) = c.call(Verb::Stop(action(vec![e.spec.name.clone()]))) {
        let _ = std::fs::remove_dir_all(&fresh);
        eprintln!(
            "dmucctl: restore: stopping {} failed; the data was not touched",
            e.spec.name
        );
        // What stopped comes back on the data it had.
        let _ = c.call(Verb::Start(action(plan.start.clone())));
        return Err(Failure::Call(err));
    }
    println!("stopped {}", plan.stop.join(", "));

    // 5. Swap the directories; the old data stays until the operator removes it.
    let swap = (|| {
        if data.exists() {
            std::fs::rename(data, &kept)
                .map_err(|err| format!("cannot move {}: {err}", data.display()))?;
        }
        std::fs::rename(&fresh, data).map_err(|err| {
            let _ = std::fs::rename(&kept, data);
            format!("cannot move {} into place: {err}", fresh.display())
        })
    })();
    if let Err(err) = swap {
        let _ = std::fs::remove_dir_all(&fresh);
        let _ = c.call(Verb::Start(action(plan.start.clone())));
        return Err(format!("{err}; the previous data is back in place").into());
    }
    println!("restored the snapshot into {}", data.display());

    // 6. Bring back what was up.
    if let Err(err) = c.call(Verb::Start(action(plan.start.clone()))) {
        eprintln!(
            "dmucctl: restore: the cluster did not come back on the restored data; the \
             previous data is {} (to go back: dmucctl stop {n}; mv {d} {d}.failed; mv {k} {d}; \
             dmucctl start {s})",
            kept.display(),
            n = e.spec.name,
            d = data.display(),
            k = kept.display(),
            s = plan.start.join(" ")
        );
        return Err(Failure::Call(err));
    }
    println!("started {}", plan.start.join(", "));
    if data.exists() && kept.exists() {
        println!(
            "the previous data is in {}: remove it once the cluster is checked",
            kept.display()
        );
    }
    Ok(())
}
