//! Writes the launch spec a shim reads (format and reader: `dmuc_wire::spec`). User and group
//! names are resolved here, because the shim has no libc to ask NSS with.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// One run's launch parameters.
pub struct Launch<'a> {
    pub name: &'a str,
    pub argv: &'a [String],
    pub env: &'a [(String, String)],
    pub cwd: Option<&'a Path>,
    pub user: Option<&'a str>,
    pub group: Option<&'a str>,
    pub log: &'a Path,
    pub log_max: u64,
    pub log_keep: u32,
    pub kill_group: bool,
    pub socket: &'a Path,
}

/// The spec's bytes (format: `dmuc_wire::spec`). What cannot be started (an unknown user, a
/// NUL inside an argument) is written as an `x` record: the shim reports it as the run's
/// failure, like a failed exec.
pub fn encode(l: &Launch<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    let mut w = dmuc_wire::spec::Writer::new(|b: &[u8]| out.extend_from_slice(b));
    // The writer turns a NUL into a space (it would end the record): such a value is
    // reported and never used.
    let mut error = None;
    let mut nul = |what: &str, v: &[u8]| {
        if v.contains(&0) && error.is_none() {
            error = Some(format!("{what} contains a NUL byte"));
        }
    };
    for a in l.argv {
        nul("an argument", a.as_bytes());
    }
    for (k, v) in l.env {
        nul("an environment variable", k.as_bytes());
        nul("an environment variable", v.as_bytes());
    }
    w.name(l.name.as_bytes());
    for a in l.argv {
        w.arg(a.as_bytes());
    }
    for (k, v) in l.env {
        w.env(k.as_bytes(), v.as_bytes());
    }
    if let Some(c) = l.cwd {
        w.cwd(c.as_os_str().as_bytes());
    }
    match ids(l.user, l.group) {
        Ok((uid, gid)) => {
            if let Some(u) = uid {
                w.uid(u);
            }
            if let Some(g) = gid {
                w.gid(g);
            }
        }
        Err(e) => error = error.or(Some(e)),
    }
    if let Some(e) = error {
        w.error(e.as_bytes());
    }
    w.log(l.log.as_os_str().as_bytes(), l.log_max, l.log_keep);
    w.kill_group(l.kill_group);
    w.socket(l.socket.as_os_str().as_bytes());
    out
}

/// Resolves a user or group given by name or number.
fn lookup<T>(
    what: &str,
    key: &str,
    by_id: impl Fn(u32) -> nix::Result<Option<T>>,
    by_name: impl Fn(&str) -> nix::Result<Option<T>>,
) -> Result<T, String> {
    match key.parse::<u32>() {
        Ok(n) => by_id(n),
        Err(_) => by_name(key),
    }
    .map_err(|e| format!("cannot look up {what} {key}: {e}"))?
    .ok_or_else(|| format!("no such {what}: {key}"))
}

/// The uid and gid to run as: the user's own group unless `group` says otherwise.
fn ids(user: Option<&str>, group: Option<&str>) -> Result<(Option<u32>, Option<u32>), String> {
    use nix::unistd::{Group, User};
    let (mut uid, mut gid) = (None, None);
    if let Some(u) = user {
        let user = lookup("user", u, |n| User::from_uid(n.into()), User::from_name)?;
        uid = Some(user.uid.as_raw());
        gid = Some(user.gid.as_raw());
    }
    if let Some(g) = group {
        let g = lookup("group", g, |n| Group::from_gid(n.into()), Group::from_name)?;
        gid = Some(g.gid.as_raw());
    }
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmuc_wire::spec::Spec;

    fn launch<'a>(argv: &'a [String], env: &'a [(String, String)]) -> Launch<'a> {
        Launch {
            name: "web",
            argv,
            env,
            cwd: Some(Path::new("/srv")),
            user: Some("root"),
            group: None,
            log: Path::new("/var/log/dmuc/web.log"),
            log_max: 1000,
            log_keep: 3,
            kill_group: true,
            socket: Path::new("/run/dmuc/shim.sock"),
        }
    }

    #[test]
    fn the_shim_reads_what_the_daemon_writes() {
        let argv = ["sh".to_string(), "-c".into(), "echo 'a b' \"$X\"\n".into()];
        let env = [("X".to_string(), "multi\nline=v".to_string())];
        let bytes = encode(&launch(&argv, &env));
        let s = Spec::parse(&bytes).unwrap();
        assert_eq!(s.name, b"web");
        let got: Vec<&[u8]> = s.args().map(|a| a.to_bytes()).collect();
        assert_eq!(got, argv.iter().map(|a| a.as_bytes()).collect::<Vec<_>>());
        assert_eq!(s.var(b"X"), Some(&b"multi\nline=v"[..]));
        assert_eq!((s.uid, s.gid), (Some(0), Some(0)));
        assert_eq!(s.cwd.unwrap().to_bytes(), b"/srv");
        assert_eq!((s.log_max, s.log_keep, s.kill_group), (1000, 3, true));
        assert_eq!(s.socket.to_bytes(), b"/run/dmuc/shim.sock");
        assert!(s.error.is_none());
    }

    #[test]
    fn what_cannot_start_is_said_in_the_spec() {
        let argv = ["a\0b".to_string()];
        let bytes = encode(&launch(&argv, &[]));
        let s = Spec::parse(&bytes).unwrap();
        assert_eq!(s.error, Some(&b"an argument contains a NUL byte"[..]));
        let argv = ["true".to_string()];
        let mut l = launch(&argv, &[]);
        l.user = Some("no-such-user-dmuc");
        let bytes = encode(&l);
        assert_eq!(
            Spec::parse(&bytes).unwrap().error,
            Some(&b"no such user: no-such-user-dmuc"[..])
        );
    }
}
