//! Default daemon paths. Root gets the FHS places; anyone else gets XDG directories, so a
//! user can run dmuc (and its tests) without privileges.

use std::path::PathBuf;

/// The resolved places the daemon uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// Control socket.
    pub socket: PathBuf,
    /// tmux server socket.
    pub tmux_socket: PathBuf,
    /// Runtime directory (shim socket, launch specs).
    pub runtime_dir: PathBuf,
    /// Log directory.
    pub log_dir: PathBuf,
    /// State directory.
    pub state_dir: PathBuf,
}

/// What the defaults depend on, gathered by the caller.
#[derive(Debug, Clone, Default)]
pub struct PathEnv {
    /// Running as uid 0.
    pub is_root: bool,
    /// The user's uid (for `/tmp/dmuc-UID` when nothing better exists).
    pub uid: u32,
    /// `$XDG_RUNTIME_DIR`.
    pub xdg_runtime_dir: Option<PathBuf>,
    /// `$XDG_STATE_HOME`.
    pub xdg_state_home: Option<PathBuf>,
    /// `$HOME`.
    pub home: Option<PathBuf>,
}

impl Paths {
    /// Defaults for this user; `runtime_dir` holds the sockets.
    pub fn defaults(env: &PathEnv) -> Paths {
        let (runtime_dir, state_base) = if env.is_root {
            (PathBuf::from("/run/dmuc"), None)
        } else {
            let rt = env
                .xdg_runtime_dir
                .clone()
                .map(|d| d.join("dmuc"))
                .unwrap_or_else(|| PathBuf::from(format!("/tmp/dmuc-{}", env.uid)));
            let st = env
                .xdg_state_home
                .clone()
                .or_else(|| env.home.as_ref().map(|h| h.join(".local/state")))
                .map(|d| d.join("dmuc"))
                .unwrap_or_else(|| rt.join("state"));
            (rt, Some(st))
        };
        let (log_dir, state_dir) = match state_base {
            None => (
                PathBuf::from("/var/log/dmuc"),
                PathBuf::from("/var/lib/dmuc"),
            ),
            Some(st) => (st.join("log"), st),
        };
        Paths {
            socket: runtime_dir.join("dmucd.sock"),
            tmux_socket: runtime_dir.join("tmux.sock"),
            runtime_dir,
            log_dir,
            state_dir,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_defaults() {
        let p = Paths::defaults(&PathEnv {
            is_root: true,
            ..Default::default()
        });
        assert_eq!(p.socket, PathBuf::from("/run/dmuc/dmucd.sock"));
        assert_eq!(p.tmux_socket, PathBuf::from("/run/dmuc/tmux.sock"));
        assert_eq!(p.log_dir, PathBuf::from("/var/log/dmuc"));
        assert_eq!(p.state_dir, PathBuf::from("/var/lib/dmuc"));
    }

    #[test]
    fn user_defaults() {
        let p = Paths::defaults(&PathEnv {
            is_root: false,
            uid: 1000,
            xdg_runtime_dir: Some("/run/user/1000".into()),
            home: Some("/home/u".into()),
            ..Default::default()
        });
        assert_eq!(p.socket, PathBuf::from("/run/user/1000/dmuc/dmucd.sock"));
        assert_eq!(p.state_dir, PathBuf::from("/home/u/.local/state/dmuc"));
        assert_eq!(p.log_dir, PathBuf::from("/home/u/.local/state/dmuc/log"));
        let bare = Paths::defaults(&PathEnv {
            uid: 7,
            ..Default::default()
        });
        assert_eq!(bare.runtime_dir, PathBuf::from("/tmp/dmuc-7"));
    }
}
