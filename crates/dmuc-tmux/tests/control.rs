//! The control client against a real tmux server on a private socket.

#![allow(clippy::unwrap_used)]

use dmuc_tmux::Client;

struct Server {
    _dir: tempfile::TempDir,
    sock: std::path::PathBuf,
    conf: std::path::PathBuf,
}

impl Server {
    fn new() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("sock");
        let conf = dir.path().join("tmux.conf");
        std::fs::write(&conf, "set -g exit-empty off\n").unwrap();
        Server {
            _dir: dir,
            sock,
            conf,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tmux")
            .arg("-S")
            .arg(&self.sock)
            .arg("kill-server")
            .status();
    }
}

fn idle() -> Vec<String> {
    vec!["cat".into()]
}

#[tokio::test]
async fn multi_line_replies_errors_and_quoting() {
    let s = Server::new();
    let (c, _notes) = Client::connect(&s.sock, &s.conf, "_ctl", &idle(), None)
        .await
        .unwrap();
    let out = c
        .run(&[vec![
            "display".into(),
            "-p".into(),
            "a#{session_name} it's; ok".into(),
        ]])
        .await
        .unwrap();
    assert_eq!(out[0], vec![b"a_ctl it's; ok".to_vec()]);

    // Two commands on one line give two replies; an error is reported as such.
    let replies = c
        .send(&[
            vec!["display".into(), "-p".into(), "one".into()],
            vec!["no-such-command".into()],
        ])
        .unwrap()
        .await
        .unwrap();
    assert_eq!(replies[0].as_ref().unwrap(), &vec![b"one".to_vec()]);
    assert!(
        replies[1]
            .as_ref()
            .unwrap_err()
            .to_string()
            .contains("unknown command")
    );

    // A multi-line reply keeps every line.
    for n in 0..5 {
        c.run(&[vec![
            "new-window".into(),
            "-d".into(),
            "-n".into(),
            format!("w{n}"),
            "--".into(),
            "cat".into(),
        ]])
        .await
        .unwrap();
    }
    let out = c
        .run(&[vec![
            "list-windows".into(),
            "-F".into(),
            "#{window_name}".into(),
        ]])
        .await
        .unwrap();
    assert_eq!(out[0].len(), 6, "{:?}", out[0]);
}

#[tokio::test]
async fn server_death_closes_the_connection() {
    let s = Server::new();
    let (c, mut notes) = Client::connect(&s.sock, &s.conf, "_ctl", &idle(), None)
        .await
        .unwrap();
    std::process::Command::new("tmux")
        .arg("-S")
        .arg(&s.sock)
        .arg("kill-server")
        .status()
        .unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let n = tokio::time::timeout_at(deadline, notes.recv())
            .await
            .expect("an exit notification within 5s");
        match n {
            Some(n) if n.name() == b"exit" => break,
            Some(_) => continue,
            None => break,
        }
    }
    // Once the connection is gone a command fails at once; it must never wait for a reply
    // nobody will send.
    let after = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        c.run(&[vec!["display".into(), "-p".into(), "x".into()]]),
    )
    .await
    .expect("a command after the server died must not hang");
    assert!(after.is_err());
}
