//! `dmucctl fetch`: the tutorial's first step ("Get ALL THE BINARIES"), done properly. Each
//! official artifact is downloaded (redirects followed, an interrupted download resumed with a
//! Range request), verified against its published checksum (a bare digest file, or a
//! `SHA256SUMS`-style list), and only then installed: first everything is downloaded and
//! verified, then every file is written under a temporary name and renamed into place. A
//! mismatch, a 404 or a cut connection installs nothing and names the file.
//!
//! Where things are published: ../shared/design/k8s-modern.md §5. The plan ([`plan`]) and the
//! checksum parsing ([`expected_digest`]) are pure and unit-tested; the downloads are tested
//! against a loopback HTTP server (tests/fetch.rs).

use std::fs::File;
use std::io::{IsTerminal, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The version set the docs install and dmuc is tested with: the newest Kubernetes minor the
/// profiles are written for (docs/kubernetes-versions.md), and the etcd, containerd, runc and
/// CNI plugins released for it. The one place it is written: `fetch`'s hint prints it, and a
/// test holds every `dmucctl fetch` line of the docs to it.
pub const TESTED: [(&str, &str); 5] = [
    ("kubernetes", "1.36"),
    ("etcd", "v3.6.5"),
    ("containerd", "2.1.4"),
    ("runc", "1.3.1"),
    ("cni", "1.7.1"),
];

/// `--kubernetes 1.36 --etcd v3.6.5 ...`: [`TESTED`] as `fetch`'s flags.
pub fn tested_flags() -> String {
    TESTED
        .iter()
        .map(|(k, v)| format!("--{k} {v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Versions asked for (each optional: fetch only some).
#[derive(Debug, Clone, Default)]
pub struct Versions {
    /// e.g. `v1.36.2`.
    pub kubernetes: Option<String>,
    /// e.g. `v3.6.5`.
    pub etcd: Option<String>,
    /// e.g. `2.1.4`.
    pub containerd: Option<String>,
    /// e.g. `1.3.1`.
    pub runc: Option<String>,
    /// e.g. `1.7.1`.
    pub cni: Option<String>,
}

/// Where artifacts come from (mirrors and air-gapped hosts replace them).
#[derive(Debug, Clone)]
pub struct Bases {
    /// `https://dl.k8s.io`.
    pub kubernetes: String,
    /// `https://github.com`.
    pub github: String,
}

/// How a verified download is installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Install {
    /// The download is the program: install it at this path.
    Binary(PathBuf),
    /// A `.tar.gz`: install these entries (matched by file name) at these paths.
    Archive(Vec<(String, PathBuf)>),
}

/// One download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// What it is, for messages.
    pub label: String,
    /// The artifact.
    pub url: String,
    /// Its checksum file.
    pub sums_url: String,
    /// Its file name, as checksum lists name it.
    pub file: String,
    /// What to do with it.
    pub install: Install,
}

/// Kubernetes binaries fetched one by one.
pub const KUBE_BINARIES: &[&str] = &[
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "kubectl",
];

fn v(s: &str) -> String {
    format!("v{}", s.trim_start_matches('v'))
}

fn bare(s: &str) -> String {
    s.trim_start_matches('v').to_string()
}

/// The downloads for `versions`. Pure.
pub fn plan(
    versions: &Versions,
    bases: &Bases,
    arch: &str,
    dir: &Path,
    cni_dir: &Path,
) -> Vec<Artifact> {
    let gh = bases.github.trim_end_matches('/');
    let mut out = Vec::new();
    if let Some(k) = &versions.kubernetes {
        let k = v(k);
        for b in KUBE_BINARIES {
            let url = format!(
                "{}/release/{k}/bin/linux/{arch}/{b}",
                bases.kubernetes.trim_end_matches('/')
            );
            out.push(Artifact {
                label: format!("{b} {k}"),
                sums_url: format!("{url}.sha256"),
                url,
                file: b.to_string(),
                install: Install::Binary(dir.join(b)),
            });
        }
    }
    if let Some(e) = &versions.etcd {
        let e = v(e);
        let file = format!("etcd-{e}-linux-{arch}.tar.gz");
        let base = format!("{gh}/etcd-io/etcd/releases/download/{e}");
        out.push(Artifact {
            label: format!("etcd {e}"),
            url: format!("{base}/{file}"),
            sums_url: format!("{base}/SHA256SUMS"),
            file,
            install: Install::Archive(
                ["etcd", "etcdctl"]
                    .iter()
                    .map(|n| (n.to_string(), dir.join(n)))
                    .collect(),
            ),
        });
    }
    if let Some(c) = &versions.containerd {
        let c = bare(c);
        let file = format!("containerd-{c}-linux-{arch}.tar.gz");
        let url = format!("{gh}/containerd/containerd/releases/download/v{c}/{file}");
        out.push(Artifact {
            label: format!("containerd v{c}"),
            sums_url: format!("{url}.sha256sum"),
            url,
            file,
            install: Install::Archive(
                ["containerd", "containerd-shim-runc-v2", "ctr"]
                    .iter()
                    .map(|n| (n.to_string(), dir.join(n)))
                    .collect(),
            ),
        });
    }
    if let Some(r) = &versions.runc {
        let r = bare(r);
        let base = format!("{gh}/opencontainers/runc/releases/download/v{r}");
        let file = format!("runc.{arch}");
        out.push(Artifact {
            label: format!("runc v{r}"),
            url: format!("{base}/{file}"),
            sums_url: format!("{base}/runc.sha256sum"),
            file,
            install: Install::Binary(dir.join("runc")),
        });
    }
    if let Some(n) = &versions.cni {
        let n = bare(n);
        let file = format!("cni-plugins-linux-{arch}-v{n}.tgz");
        let url = format!("{gh}/containernetworking/plugins/releases/download/v{n}/{file}");
        out.push(Artifact {
            label: format!("CNI plugins v{n}"),
            sums_url: format!("{url}.sha256"),
            url,
            file,
            install: Install::Archive(
                ["bridge", "host-local", "loopback", "portmap"]
                    .iter()
                    .map(|p| (p.to_string(), cni_dir.join(p)))
                    .collect(),
            ),
        });
    }
    out
}

/// The digest a checksum file gives for `file`: the only token of a bare digest file, or the
/// first field of the line whose second field (without a leading `*` or `./`) is `file`.
pub fn expected_digest(text: &str, file: &str) -> Result<String, String> {
    let tokens: Vec<&str> = text.split_whitespace().collect();
    let is_hex =
        |t: &str| (t.len() == 64 || t.len() == 128) && t.chars().all(|c| c.is_ascii_hexdigit());
    if tokens.len() == 1 && is_hex(tokens[0]) {
        return Ok(tokens[0].to_ascii_lowercase());
    }
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let (Some(d), Some(name)) = (f.next(), f.next()) else {
            continue;
        };
        let name = name.trim_start_matches('*').trim_start_matches("./");
        let name = name.rsplit('/').next().unwrap_or(name);
        if name == file && is_hex(d) {
            return Ok(d.to_ascii_lowercase());
        }
    }
    Err(format!("the checksum file does not list {file}"))
}

/// Hex SHA-256 or SHA-512 (by the expected digest's length) of a file.
pub(crate) fn digest_of(path: &Path, expected_len: usize) -> Result<String, String> {
    let alg = if expected_len == 128 {
        &ring::digest::SHA512
    } else {
        &ring::digest::SHA256
    };
    let mut ctx = ring::digest::Context::new(alg);
    let mut f = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    Ok(ctx
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Progress output: a bar on a terminal, a line per step otherwise.
pub struct Progress {
    tty: bool,
}

impl Progress {
    /// On stderr.
    pub fn new() -> Progress {
        Progress {
            tty: std::io::stderr().is_terminal(),
        }
    }

    fn line(&self, s: &str) {
        eprintln!("{s}");
    }

    fn bar(&self, label: &str, done: u64, total: Option<u64>) {
        if !self.tty {
            return;
        }
        let mb = |b: u64| b as f64 / 1_048_576.0;
        let text = match total {
            Some(t) if t > 0 => {
                let pct = (done * 100 / t).min(100);
                let fill = (pct as usize) / 4;
                format!(
                    "\r{label:<32} [{}{}] {pct:>3}% {:.1}/{:.1} MB",
                    "=".repeat(fill),
                    " ".repeat(25 - fill),
                    mb(done),
                    mb(t)
                )
            }
            _ => format!("\r{label:<32} {:.1} MB", mb(done)),
        };
        eprint!("{text}");
        let _ = std::io::stderr().flush();
    }

    fn end_bar(&self) {
        if self.tty {
            eprintln!();
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(20)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        // The whole body: generous, as a server binary is ~100 MB; a cut is resumed later.
        .timeout_recv_body(Some(Duration::from_secs(3600)))
        .max_redirects(10)
        .http_status_as_error(false)
        .build()
        .new_agent()
}

fn get_text(agent: &ureq::Agent, url: &str) -> Result<String, String> {
    let mut r = agent.get(url).call().map_err(|e| format!("{url}: {e}"))?;
    let st = r.status().as_u16();
    if st != 200 {
        return Err(format!("{url}: HTTP {st}"));
    }
    r.body_mut()
        .with_config()
        .limit(1 << 20)
        .read_to_string()
        .map_err(|e| format!("{url}: {e}"))
}

/// Downloads `a` into `part`, resuming what an earlier attempt left there.
fn download(agent: &ureq::Agent, a: &Artifact, part: &Path, p: &Progress) -> Result<(), String> {
    let have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    let mut req = agent.get(&a.url);
    if have > 0 {
        req = req.header("Range", format!("bytes={have}-"));
    }
    let mut resp = req.call().map_err(|e| format!("{}: {e}", a.url))?;
    let status = resp.status().as_u16();
    let (mut f, mut done) = match status {
        206 => {
            p.line(&format!("resuming {} at {have} bytes", a.file));
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(part)
                .map_err(|e| format!("{}: {e}", part.display()))?;
            f.seek(SeekFrom::End(0))
                .map_err(|e| format!("{}: {e}", part.display()))?;
            (f, have)
        }
        200 => (
            File::create(part).map_err(|e| format!("{}: {e}", part.display()))?,
            0,
        ),
        // The range is past the end: what we have may be whole; verification decides.
        416 => return Ok(()),
        s => return Err(format!("{}: HTTP {s}", a.url)),
    };
    let total = resp
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map(|n| n + done);
    let mut body = resp.body_mut().with_config().limit(u64::MAX).reader();
    let mut buf = vec![0u8; 128 * 1024];
    let mut shown = 0u64;
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                p.end_bar();
                return Err(format!(
                    "download of {} interrupted after {done} bytes ({e}); run fetch again to resume",
                    a.file
                ));
            }
        };
        f.write_all(&buf[..n])
            .map_err(|e| format!("{}: {e}", part.display()))?;
        done += n as u64;
        if done - shown >= 256 * 1024 {
            p.bar(&a.label, done, total);
            shown = done;
        }
    }
    p.bar(&a.label, done, total);
    p.end_bar();
    f.sync_all()
        .map_err(|e| format!("{}: {e}", part.display()))?;
    if let Some(t) = total
        && done < t
    {
        return Err(format!(
            "download of {} ended after {done} of {t} bytes; run fetch again to resume",
            a.file
        ));
    }
    Ok(())
}

/// Writes `from` to `dest` under a temporary name in the same directory (mode 0755).
fn stage(dest: &Path, from: &mut dyn Read) -> Result<PathBuf, String> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let tmp = dir.join(format!(
        ".{}.dmuc-new",
        dest.file_name().and_then(|n| n.to_str()).unwrap_or("x")
    ));
    let mut f = File::create(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::io::copy(from, &mut f).map_err(|e| format!("{}: {e}", tmp.display()))?;
    f.sync_all()
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    Ok(tmp)
}

/// Stages what `a` installs from its verified download; returns (temp, destination) pairs.
fn stage_artifact(a: &Artifact, part: &Path) -> Result<Vec<(PathBuf, PathBuf)>, String> {
    let open = || File::open(part).map_err(|e| format!("{}: {e}", part.display()));
    match &a.install {
        Install::Binary(dest) => Ok(vec![(stage(dest, &mut open()?)?, dest.clone())]),
        Install::Archive(wanted) => {
            let mut staged: Vec<(PathBuf, PathBuf)> = Vec::new();
            let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(open()?));
            let entries = ar.entries().map_err(|e| format!("{}: {e}", a.file))?;
            for entry in entries {
                let mut entry = entry.map_err(|e| format!("{}: {e}", a.file))?;
                if !entry.header().entry_type().is_file() {
                    continue;
                }
                let path = entry.path().map_err(|e| format!("{}: {e}", a.file))?;
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default()
                    .to_string();
                if let Some((_, dest)) = wanted.iter().find(|(n, _)| *n == name)
                    && !staged.iter().any(|(_, d)| d == dest)
                {
                    staged.push((stage(dest, &mut entry)?, dest.clone()));
                }
            }
            let missing: Vec<&str> = wanted
                .iter()
                .filter(|(_, d)| !staged.iter().any(|(_, s)| s == d))
                .map(|(n, _)| n.as_str())
                .collect();
            if !missing.is_empty() {
                for (tmp, _) in &staged {
                    let _ = std::fs::remove_file(tmp);
                }
                return Err(format!("{} lacks {}", a.file, missing.join(", ")));
            }
            Ok(staged)
        }
    }
}

/// Downloads and verifies every artifact, then installs them all; on any failure installs
/// nothing. Returns the installed paths.
pub fn run(artifacts: &[Artifact], staging: &Path, p: &Progress) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(staging)
        .map_err(|e| format!("cannot create {}: {e}", staging.display()))?;
    let agent = agent();
    let mut verified = Vec::new();
    for a in artifacts {
        p.line(&format!("fetching {} from {}", a.label, a.url));
        let sums = get_text(&agent, &a.sums_url)?;
        let want = expected_digest(&sums, &a.file).map_err(|e| format!("{}: {e}", a.sums_url))?;
        let part = staging.join(format!("{}.part", a.file));
        download(&agent, a, &part, p)?;
        let got = digest_of(&part, want.len())?;
        if got != want {
            // A bad file must not be resumed: start from scratch next time.
            let _ = std::fs::remove_file(&part);
            return Err(format!(
                "checksum mismatch for {}: {} says {want}, the download has {got}; nothing was installed",
                a.file, a.sums_url
            ));
        }
        p.line(&format!(
            "verified {} ({} {want})",
            a.file,
            if want.len() == 128 {
                "sha512"
            } else {
                "sha256"
            }
        ));
        verified.push((a, part));
    }
    // Everything is verified: stage every file, then rename them all into place.
    let mut staged = Vec::new();
    for (a, part) in &verified {
        match stage_artifact(a, part) {
            Ok(s) => staged.extend(s),
            Err(e) => {
                for (tmp, _) in &staged {
                    let _ = std::fs::remove_file(tmp);
                }
                return Err(format!("{e}; nothing was installed"));
            }
        }
    }
    let mut installed = Vec::new();
    for (tmp, dest) in staged {
        std::fs::rename(&tmp, &dest)
            .map_err(|e| format!("cannot install {}: {e}", dest.display()))?;
        installed.push(dest);
    }
    for (_, part) in verified {
        let _ = std::fs::remove_file(part);
    }
    let _ = std::fs::remove_dir(staging);
    Ok(installed)
}

/// Resolves `1.34`, `v1.34`, `v1.34.x` to the latest patch release via
/// `BASE/release/stable-1.34.txt`; an exact version is returned as is.
pub fn resolve_kubernetes(base: &str, version: &str) -> Result<String, String> {
    let bare = version.trim_start_matches('v').trim_end_matches(".x");
    if bare.split('.').count() >= 3 {
        return Ok(format!("v{bare}"));
    }
    let url = format!("{}/release/stable-{bare}.txt", base.trim_end_matches('/'));
    let text = get_text(&agent(), &url)?;
    let v = text.trim();
    if v.starts_with('v') && v.split('.').count() == 3 {
        Ok(v.to_string())
    } else {
        Err(format!("{url}: unexpected content {v:?}"))
    }
}

/// `amd64`, `arm64`, ... for this machine.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_files_of_both_formats() {
        let d = "a".repeat(64);
        assert_eq!(expected_digest(&format!("{d}\n"), "kubelet").unwrap(), d);
        let list = format!(
            "{}  etcd-v3.6.5-linux-arm64.tar.gz\n{}  etcd-v3.6.5-linux-amd64.tar.gz\n",
            "b".repeat(64),
            "C".repeat(64)
        );
        assert_eq!(
            expected_digest(&list, "etcd-v3.6.5-linux-amd64.tar.gz").unwrap(),
            "c".repeat(64)
        );
        let star = format!("{} *./runc.amd64\n", "d".repeat(128));
        assert_eq!(
            expected_digest(&star, "runc.amd64").unwrap(),
            "d".repeat(128)
        );
        assert!(expected_digest(&list, "other.tar.gz").is_err());
        assert!(expected_digest("not a digest", "x").is_err());
    }

    #[test]
    fn plan_follows_the_published_layouts() {
        let versions = Versions {
            kubernetes: Some("1.34.2".into()),
            etcd: Some("3.6.5".into()),
            containerd: Some("v2.1.4".into()),
            runc: Some("1.3.1".into()),
            cni: Some("1.7.1".into()),
        };
        let bases = Bases {
            kubernetes: "https://dl.k8s.io".into(),
            github: "https://github.com/".into(),
        };
        let p = plan(
            &versions,
            &bases,
            "amd64",
            Path::new("/b"),
            Path::new("/cni"),
        );
        let urls: Vec<&str> = p.iter().map(|a| a.url.as_str()).collect();
        assert!(urls.contains(&"https://dl.k8s.io/release/v1.34.2/bin/linux/amd64/kube-apiserver"));
        assert!(urls.contains(
            &"https://github.com/etcd-io/etcd/releases/download/v3.6.5/etcd-v3.6.5-linux-amd64.tar.gz"
        ));
        assert!(urls.contains(
            &"https://github.com/containerd/containerd/releases/download/v2.1.4/containerd-2.1.4-linux-amd64.tar.gz"
        ));
        assert!(urls.contains(
            &"https://github.com/opencontainers/runc/releases/download/v1.3.1/runc.amd64"
        ));
        assert!(urls.contains(
            &"https://github.com/containernetworking/plugins/releases/download/v1.7.1/cni-plugins-linux-amd64-v1.7.1.tgz"
        ));
        let etcd = p.iter().find(|a| a.label.starts_with("etcd")).unwrap();
        assert!(etcd.sums_url.ends_with("/v3.6.5/SHA256SUMS"));
        let runc = p.iter().find(|a| a.label.starts_with("runc")).unwrap();
        assert_eq!(runc.install, Install::Binary("/b/runc".into()));
        let cni = p.iter().find(|a| a.label.starts_with("CNI")).unwrap();
        assert!(
            matches!(&cni.install, Install::Archive(w) if w.iter().all(|(_, d)| d.starts_with("/cni")))
        );
        assert_eq!(p.len(), KUBE_BINARIES.len() + 4);
    }

    /// Every `dmucctl fetch` line of the docs (README and docs/*.md) asks for the versions of
    /// [`TESTED`]: one version set, not a page that says 1.36 while its command fetches 1.34.
    #[test]
    fn the_docs_fetch_the_tested_version_set() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut pages = vec![root.join("README.md")];
        for e in std::fs::read_dir(root.join("docs")).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "md") {
                pages.push(p);
            }
        }
        let mut seen = 0;
        for page in pages {
            let text = std::fs::read_to_string(&page).unwrap();
            for (n, line) in text.lines().enumerate() {
                let Some(at) = line.find("dmucctl fetch --") else {
                    continue;
                };
                seen += 1;
                let words: Vec<&str> = line[at..].split_whitespace().collect();
                for (flag, version) in TESTED {
                    if let Some(i) = words.iter().position(|w| *w == format!("--{flag}")) {
                        let got = words
                            .get(i + 1)
                            .map(|w| w.trim_end_matches(['`', ')', ';', ',', '.']));
                        assert_eq!(
                            got,
                            Some(version),
                            "{}:{}: --{flag}: {line}",
                            page.display(),
                            n + 1
                        );
                    }
                }
            }
        }
        assert!(seen >= 3, "the docs' fetch lines: {seen}");
        assert_eq!(
            tested_flags(),
            "--kubernetes 1.36 --etcd v3.6.5 --containerd 2.1.4 --runc 1.3.1 --cni 1.7.1"
        );
    }
}
