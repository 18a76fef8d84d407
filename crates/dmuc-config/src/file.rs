//! Reading a config file and summarizing a valid one: what `dmucd --check` and
//! `dmucctl check` print, from one place so they cannot differ.

use std::collections::BTreeMap;
use std::path::Path;

use crate::Config;

/// Reads and validates a config file. Built-in variables: `${dmucd-dir}` (the directory of
/// the running binary: dmucd and dmucctl are installed side by side), `${hostname}` (this
/// host's name, lowercased: what a kubelet registers as) and `${host-ip}` (the IPv4 address
/// the default route leaves from, else 127.0.0.1). `overrides` replace `[vars]` values.
pub fn load_file(path: &Path, overrides: &BTreeMap<String, String>) -> Result<Config, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    crate::parse_config_full(
        &text,
        path,
        &|k| std::env::var(k).ok(),
        &host_builtins(),
        overrides,
    )
    .map_err(|e| e.to_string())
}

/// The built-in variables, read from this host.
pub fn host_builtins() -> BTreeMap<String, String> {
    let mut b = BTreeMap::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
    {
        b.insert("dmucd-dir".to_string(), dir.display().to_string());
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_lowercase())
        .unwrap_or_else(|_| "localhost".into());
    b.insert("hostname".to_string(), host);
    b.insert("host-ip".to_string(), host_ip().to_string());
    b
}

/// The source address of the default route: connecting a UDP socket only asks the kernel's
/// routing table (no packet is sent). 127.0.0.1 when there is no route.
fn host_ip() -> std::net::Ipv4Addr {
    let probe = || -> std::io::Result<std::net::IpAddr> {
        let s = std::net::UdpSocket::bind("0.0.0.0:0")?;
        s.connect("192.0.2.1:9")?; // TEST-NET-1: never routed anywhere real
        Ok(s.local_addr()?.ip())
    };
    match probe() {
        Ok(std::net::IpAddr::V4(ip)) if !ip.is_unspecified() => ip,
        _ => std::net::Ipv4Addr::LOCALHOST,
    }
}

/// Parses `KEY=VALUE` (the `--var` flag).
pub fn parse_var(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

/// The `--check` summary of a valid config: components in start order, by level.
pub fn summary(cfg: &Config) -> String {
    use std::fmt::Write;
    let g = &cfg.graph;
    let mut s = format!("config OK: {} components\n", g.len());
    for (i, level) in g.levels().iter().enumerate() {
        let _ = writeln!(s, "  level {i}:");
        for name in level {
            let Some(c) = g.get(name) else { continue };
            let after: Vec<String> = c
                .after
                .iter()
                .map(|d| format!("{} ({})", d.component, d.condition.as_str()))
                .collect();
            let ready = c
                .ready
                .as_ref()
                .map_or("-".to_string(), |p| p.check.kind().to_string());
            let _ = write!(s, "    {name:<24} ready: {ready:<5}");
            if !after.is_empty() {
                let _ = write!(s, " after: {}", after.join(", "));
            }
            s.push('\n');
        }
    }
    s
}
