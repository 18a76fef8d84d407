//! `dmuc-shim --spec FILE --run N`: see the `shim` module. Arguments are parsed by hand to
//! keep this binary small.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut spec: Option<PathBuf> = None;
    let mut run: Option<u64> = None;
    let mut args = std::env::args_os().skip(1);
    while let Some(a) = args.next() {
        match a.to_str() {
            Some("--spec") => spec = args.next().map(PathBuf::from),
            Some("--run") => run = args.next().and_then(|r| r.to_str()?.parse().ok()),
            _ => {
                eprintln!("usage: dmuc-shim --spec FILE --run N (started by dmucd in a tmux pane)");
                return ExitCode::from(2);
            }
        }
    }
    let (Some(spec), Some(run)) = (spec, run) else {
        eprintln!("usage: dmuc-shim --spec FILE --run N (started by dmucd in a tmux pane)");
        return ExitCode::from(2);
    };
    ExitCode::from(dmuc_shim::shim::main(&spec, run).clamp(0, 255) as u8)
}
