//! `dmucctl fetch` against a loopback HTTP server serving generated release artifacts:
//! success (with redirects), bad checksum, 404, a truncated body then a resumed download.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

#[derive(Clone)]
enum Route {
    File(Vec<u8>),
    Redirect(String),
    /// Announces the whole length, sends only the first `n` bytes, closes (once; then serves
    /// the file normally).
    CutOnce(Vec<u8>, usize),
}

type Routes = Arc<Mutex<HashMap<String, Route>>>;

/// Serves `routes` on a loopback port; honours `Range: bytes=N-`. Returns the base URL.
fn server(routes: Routes) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut s) = conn else { continue };
            let routes = routes.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut first = String::new();
                r.read_line(&mut first).unwrap();
                let path = first.split_whitespace().nth(1).unwrap_or("/").to_string();
                let mut from = 0usize;
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).unwrap_or(0) <= 2 {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("range: bytes=") {
                        from = v.trim().trim_end_matches('-').parse().unwrap_or(0);
                    }
                }
                let route = routes.lock().unwrap().get(&path).cloned();
                let _ = match route {
                    None => write!(
                        s,
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    ),
                    Some(Route::Redirect(to)) => write!(
                        s,
                        "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    ),
                    Some(Route::CutOnce(body, n)) => {
                        routes
                            .lock()
                            .unwrap()
                            .insert(path, Route::File(body.clone()));
                        let _ = write!(
                            s,
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        );
                        s.write_all(&body[..n])
                    }
                    Some(Route::File(body)) if from > 0 && from < body.len() => {
                        let _ = write!(
                            s,
                            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {from}-{}/{}\r\nConnection: close\r\n\r\n",
                            body.len() - from,
                            body.len() - 1,
                            body.len()
                        );
                        s.write_all(&body[from..])
                    }
                    Some(Route::File(body)) => {
                        let _ = write!(
                            s,
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        );
                        s.write_all(&body)
                    }
                };
            });
        }
    });
    base
}

fn sha256(b: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, b)
        .as_ref()
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

fn targz(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let gz = flate2::write::GzEncoder::new(&mut out, flate2::Compression::fast());
        let mut t = tar::Builder::new(gz);
        for (name, body) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(0o755);
            h.set_cksum();
            t.append_data(&mut h, name, *body).unwrap();
        }
        t.into_inner().unwrap().finish().unwrap();
    }
    out
}

/// A release layout: kubernetes binaries (bare digests, behind a redirect as dl.k8s.io does),
/// etcd (SHA256SUMS list), runc (sha256sum list), containerd and CNI tarballs.
fn releases(routes: &Routes) {
    let mut r = routes.lock().unwrap();
    r.insert(
        "/release/stable-1.34.txt".into(),
        Route::File(b"v1.34.7\n".to_vec()),
    );
    for b in [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kubelet",
        "kube-proxy",
        "kubectl",
    ] {
        let body = format!("#!/bin/sh\necho {b} v1.34.7\n").into_bytes();
        let real = format!("/cdn/{b}");
        r.insert(
            format!("/release/v1.34.7/bin/linux/amd64/{b}"),
            Route::Redirect(real.clone()),
        );
        r.insert(
            format!("/release/v1.34.7/bin/linux/amd64/{b}.sha256"),
            Route::File(sha256(&body).into_bytes()),
        );
        r.insert(real, Route::File(body));
    }
    let etcd = targz(&[
        ("etcd-v3.6.5-linux-amd64/etcd", b"etcd-binary"),
        ("etcd-v3.6.5-linux-amd64/etcdctl", b"etcdctl-binary"),
        ("etcd-v3.6.5-linux-amd64/README.md", b"readme"),
    ]);
    let sums = format!(
        "{}  etcd-v3.6.5-linux-arm64.tar.gz\n{}  etcd-v3.6.5-linux-amd64.tar.gz\n",
        sha256(b"other"),
        sha256(&etcd)
    );
    r.insert(
        "/etcd-io/etcd/releases/download/v3.6.5/etcd-v3.6.5-linux-amd64.tar.gz".into(),
        Route::File(etcd),
    );
    r.insert(
        "/etcd-io/etcd/releases/download/v3.6.5/SHA256SUMS".into(),
        Route::File(sums.into_bytes()),
    );
    let runc = b"runc-binary".to_vec();
    r.insert(
        "/opencontainers/runc/releases/download/v1.3.1/runc.sha256sum".into(),
        Route::File(
            format!(
                "{}  runc.arm64\n{}  runc.amd64\n",
                sha256(b"x"),
                sha256(&runc)
            )
            .into_bytes(),
        ),
    );
    r.insert(
        "/opencontainers/runc/releases/download/v1.3.1/runc.amd64".into(),
        Route::File(runc),
    );
    let cd = targz(&[
        ("bin/containerd", b"containerd-binary"),
        ("bin/containerd-shim-runc-v2", b"shim-binary"),
        ("bin/ctr", b"ctr-binary"),
    ]);
    let url = "/containerd/containerd/releases/download/v2.1.4/containerd-2.1.4-linux-amd64.tar.gz";
    r.insert(
        format!("{url}.sha256sum"),
        Route::File(format!("{}  containerd-2.1.4-linux-amd64.tar.gz\n", sha256(&cd)).into_bytes()),
    );
    r.insert(url.into(), Route::File(cd));
    let cni = targz(&[
        ("./bridge", b"bridge"),
        ("./host-local", b"host-local"),
        ("./loopback", b"loopback"),
        ("./portmap", b"portmap"),
        ("./vlan", b"vlan"),
    ]);
    let url =
        "/containernetworking/plugins/releases/download/v1.7.1/cni-plugins-linux-amd64-v1.7.1.tgz";
    r.insert(
        format!("{url}.sha256"),
        Route::File(format!("{}  cni-plugins-linux-amd64-v1.7.1.tgz\n", sha256(&cni)).into_bytes()),
    );
    r.insert(url.into(), Route::File(cni));
}

fn fetch(base: &str, dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dmucctl-tools"))
        .args([
            "fetch",
            "--arch",
            "amd64",
            "--kubernetes-url",
            base,
            "--github-url",
            base,
        ])
        .arg("--dir")
        .arg(dir.join("bin"))
        .arg("--cni-dir")
        .arg(dir.join("cni"))
        .args(args)
        .output()
        .unwrap()
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = ["bin", "cni"]
        .iter()
        .flat_map(|d| std::fs::read_dir(dir.join(d)).into_iter().flatten())
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    v.sort();
    v
}

#[test]
fn everything_verified_and_installed_with_redirects_and_both_checksum_formats() {
    let routes: Routes = Arc::default();
    releases(&routes);
    let base = server(routes);
    let dir = tempfile::tempdir().unwrap();
    let o = fetch(
        &base,
        dir.path(),
        &[
            "--kubernetes",
            "1.34",
            "--etcd",
            "v3.6.5",
            "--containerd",
            "2.1.4",
            "--runc",
            "1.3.1",
            "--cni",
            "1.7.1",
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("fetching kube-apiserver v1.34.7"),
        "1.34 resolved through stable-1.34.txt: {err}"
    );
    assert!(
        err.contains("verified etcd-v3.6.5-linux-amd64.tar.gz (sha256"),
        "{err}"
    );
    assert!(!err.contains('\r'), "a progress bar in a pipe: {err:?}");
    assert_eq!(
        listing(dir.path()),
        [
            "bridge",
            "containerd",
            "containerd-shim-runc-v2",
            "ctr",
            "etcd",
            "etcdctl",
            "host-local",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-proxy",
            "kube-scheduler",
            "kubectl",
            "kubelet",
            "loopback",
            "portmap",
            "runc",
        ]
    );
    let bin = dir.path().join("bin");
    assert_eq!(
        std::fs::read(bin.join("etcdctl")).unwrap(),
        b"etcdctl-binary"
    );
    assert_eq!(std::fs::read(bin.join("runc")).unwrap(), b"runc-binary");
    assert_eq!(
        std::fs::read(dir.path().join("cni/portmap")).unwrap(),
        b"portmap"
    );
    let o = Command::new(bin.join("kubelet")).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "kubelet v1.34.7\n");
    assert_eq!(
        std::fs::metadata(bin.join("ctr"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o755
    );
    assert!(!bin.join(".dmuc-fetch").exists(), "staging left behind");
}

#[test]
fn a_bad_checksum_or_a_404_installs_nothing_and_names_the_file() {
    let routes: Routes = Arc::default();
    releases(&routes);
    routes.lock().unwrap().insert(
        "/opencontainers/runc/releases/download/v1.3.1/runc.amd64".into(),
        Route::File(b"tampered".to_vec()),
    );
    let base = server(routes.clone());
    let dir = tempfile::tempdir().unwrap();
    let o = fetch(&base, dir.path(), &["--etcd", "v3.6.5", "--runc", "1.3.1"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("checksum mismatch for runc.amd64") && err.contains("nothing was installed"),
        "{err}"
    );
    assert!(
        listing(dir.path()).is_empty(),
        "etcd was verified but must not be installed alone"
    );

    let o = fetch(
        &base,
        dir.path(),
        &["--etcd", "v3.6.5", "--containerd", "9.9.9"],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("containerd-9.9.9-linux-amd64.tar.gz.sha256sum: HTTP 404"),
        "{err}"
    );
    assert!(listing(dir.path()).is_empty());
}

#[test]
fn a_cut_download_is_resumed_by_the_next_run() {
    let routes: Routes = Arc::default();
    releases(&routes);
    let body: Vec<u8> = (0..300_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let url = "/opencontainers/runc/releases/download/v1.3.1/runc.amd64";
    routes
        .lock()
        .unwrap()
        .insert(url.into(), Route::CutOnce(body.clone(), 500_000));
    routes.lock().unwrap().insert(
        "/opencontainers/runc/releases/download/v1.3.1/runc.sha256sum".into(),
        Route::File(format!("{}  runc.amd64\n", sha256(&body)).into_bytes()),
    );
    let base = server(routes);
    let dir = tempfile::tempdir().unwrap();
    let o = fetch(&base, dir.path(), &["--runc", "1.3.1"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("runc.amd64") && err.contains("run fetch again to resume"),
        "{err}"
    );
    assert!(listing(dir.path()).is_empty());
    let part = dir.path().join("bin/.dmuc-fetch/runc.amd64.part");
    assert_eq!(std::fs::metadata(&part).unwrap().len(), 500_000);

    let o = fetch(&base, dir.path(), &["--runc", "1.3.1"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("resuming runc.amd64 at 500000 bytes"), "{err}");
    assert_eq!(std::fs::read(dir.path().join("bin/runc")).unwrap(), body);
}

#[test]
fn naming_nothing_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let o = fetch("http://127.0.0.1:9", dir.path(), &[]);
    assert_eq!(o.status.code(), Some(2));
}
