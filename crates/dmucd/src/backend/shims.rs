//! Starting a component's shim: as our child, which at once forks the real shim into a
//! session of its own and exits (`dmuc-shim --detached`). The shim must outlive dmucd (that
//! is what adoption rests on), and a long-lived child would cost dmucd one descriptor each
//! to reap it; the short-lived one is reaped off the actor.

use std::path::Path;
use std::process::Stdio;

/// Starts the shim for run `run` from the spec at `spec`; it connects to the shim socket
/// and says `hello` (or, failing that, its deadline catches it).
pub(super) fn start(shim: &Path, spec: &Path, run: u64) -> Result<(), String> {
    let mut child = tokio::process::Command::new(shim)
        .arg("--spec")
        .arg(spec)
        .args(["--run", &run.to_string(), "--detached"])
        // The program's environment is in the spec; the shim needs none.
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{}: {e}", shim.display()))?;
    tokio::spawn(async move {
        let _ = child.wait().await;
    });
    Ok(())
}
