//! A backend without tmux and without processes, for runtime tests: every call is reported to
//! the test, launches only recorded (or failed), view windows get a pane at once (or wait for
//! the test to answer them) and a "terminal" that is a pipe the test can read, and signals
//! are only recorded.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::sync::{mpsc, oneshot};

use super::{Backend, Note, Pane, Reply};

/// A call the runtime made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Launch {
        name: String,
        run: u64,
    },
    OpenView {
        name: String,
        pane: Option<Pane>,
        shim: Option<u32>,
    },
    Show {
        marks: Vec<(String, String)>,
        summary: Option<String>,
    },
    Overview(String),
    Close(Pane),
    Replace,
    KillServer,
    Signal {
        pid: i32,
        signal: Signal,
    },
}

/// A view window waiting for the test's answer: component, its pane, where the answer goes.
type Held = (
    String,
    Pane,
    oneshot::Sender<Result<(Pane, OwnedFd), String>>,
);

#[derive(Default)]
struct Shared {
    /// View windows wait for `Handle::answer` instead of opening at once.
    hold: bool,
    held: Vec<Held>,
    /// Launches fail (no shim could be started).
    fail: bool,
    /// The read ends of the view windows' terminals, by component.
    views: Vec<(String, OwnedFd)>,
    next_window: u32,
}

impl Shared {
    fn new_pane(&mut self) -> Pane {
        self.next_window += 1;
        Pane {
            window: format!("@{}", self.next_window),
            pane: format!("%{}", self.next_window),
        }
    }
}

/// The backend the runtime holds.
pub struct Fake {
    shared: Arc<Mutex<Shared>>,
    calls: mpsc::UnboundedSender<Call>,
    lose: mpsc::UnboundedReceiver<Note>,
}

/// The test's side.
pub struct Handle {
    shared: Arc<Mutex<Shared>>,
    calls: mpsc::UnboundedReceiver<Call>,
    lose: mpsc::UnboundedSender<Note>,
    /// Every call received so far, in order.
    pub seen: Vec<Call>,
    /// Calls received that no `expect` has taken yet.
    pending: std::collections::VecDeque<Call>,
}

/// A fake backend and the handle that watches and steers it.
pub fn new() -> (Fake, Handle) {
    let shared = Arc::new(Mutex::new(Shared::default()));
    let (calls_tx, calls_rx) = mpsc::unbounded_channel();
    let (lose_tx, lose_rx) = mpsc::unbounded_channel();
    (
        Fake {
            shared: shared.clone(),
            calls: calls_tx,
            lose: lose_rx,
        },
        Handle {
            shared,
            calls: calls_rx,
            lose: lose_tx,
            seen: Vec::new(),
            pending: Default::default(),
        },
    )
}

/// How long (in the test's time, which is paused: it advances only when everything waits) a
/// call may take to come.
const DEADLINE: Duration = Duration::from_secs(600);

impl Handle {
    /// Takes the first call that `want` picks and no earlier `expect` took, waiting for it
    /// if it has not been made yet.
    pub async fn expect(&mut self, what: &str, want: impl Fn(&Call) -> bool) -> Call {
        if let Some(i) = self.pending.iter().position(&want) {
            return self.pending.remove(i).unwrap();
        }
        let wait = async {
            loop {
                let c = self.calls.recv().await.expect("the runtime is gone");
                self.seen.push(c.clone());
                if want(&c) {
                    return c;
                }
                self.pending.push_back(c);
            }
        };
        match tokio::time::timeout(DEADLINE, wait).await {
            Ok(c) => c,
            Err(_) => panic!("no {what} within {DEADLINE:?}; calls: {:#?}", self.seen),
        }
    }

    /// Takes the calls made so far and not taken yet, without waiting.
    pub fn drain(&mut self) -> Vec<Call> {
        let mut out: Vec<Call> = self.pending.drain(..).collect();
        while let Ok(c) = self.calls.try_recv() {
            self.seen.push(c.clone());
            out.push(c);
        }
        out
    }

    /// Whether view windows wait for `answer`.
    pub fn hold(&self, hold: bool) {
        self.shared.lock().unwrap().hold = hold;
    }

    /// Whether launches fail.
    pub fn fail_launches(&self, fail: bool) {
        self.shared.lock().unwrap().fail = fail;
    }

    /// Opens the held view window of `name` (its read end is `view_of`'s).
    pub fn answer(&self, name: &str) -> Pane {
        let mut s = self.shared.lock().unwrap();
        let i = s
            .held
            .iter()
            .position(|(n, _, _)| n == name)
            .unwrap_or_else(|| panic!("no held view window of {name}"));
        let (_, pane, reply) = s.held.remove(i);
        let (r, w) = nix::unistd::pipe().unwrap();
        s.views.push((name.into(), r));
        let _ = reply.send(Ok((pane.clone(), w)));
        pane
    }

    /// The tmux server dies.
    pub fn lose_server(&self) {
        self.lose.send(Note::Lost).unwrap();
    }

    /// A client starts (or stops) showing the Overview window.
    pub fn watch_overview(&self, watched: bool) {
        self.lose.send(Note::Watched(watched)).unwrap();
    }

    /// The read end of the last view window opened for `name`.
    pub fn view_of(&self, name: &str) -> Option<OwnedFd> {
        let mut s = self.shared.lock().unwrap();
        let i = s.views.iter().rposition(|(n, _)| n == name)?;
        Some(s.views.remove(i).1)
    }
}

impl Fake {
    fn call(&self, c: Call) {
        let _ = self.calls.send(c);
    }
}

impl Backend for Fake {
    fn launch(&self, spec: &Path, run: u64) -> Result<(), String> {
        // The runtime writes `SPEC_DIR/NAME.spec`.
        let name = spec.file_stem().unwrap().to_string_lossy().into_owned();
        self.call(Call::Launch { name, run });
        if self.shared.lock().unwrap().fail {
            return Err("Resource temporarily unavailable (os error 11)".into());
        }
        Ok(())
    }

    fn open_view(
        &self,
        name: &str,
        pane: Option<&Pane>,
        shim: Option<u32>,
    ) -> Reply<(Pane, OwnedFd)> {
        self.call(Call::OpenView {
            name: name.into(),
            pane: pane.cloned(),
            shim,
        });
        let mut s = self.shared.lock().unwrap();
        let pane = pane.cloned().unwrap_or_else(|| s.new_pane());
        if s.hold {
            let (tx, rx) = oneshot::channel();
            s.held.push((name.into(), pane, tx));
            return Box::pin(async move { rx.await.unwrap_or(Err("dropped".into())) });
        }
        let result = nix::unistd::pipe()
            .map_err(|e| e.to_string())
            .map(|(r, w)| {
                s.views.push((name.into(), r));
                (pane, w)
            });
        Box::pin(async move { result })
    }

    fn show(&self, marks: &[(String, String)], summary: Option<&str>) {
        self.call(Call::Show {
            marks: marks.to_vec(),
            summary: summary.map(str::to_string),
        });
    }

    fn draw_overview(&mut self, text: &str) {
        self.call(Call::Overview(text.into()));
    }

    fn close_window(&self, pane: &Pane) {
        self.call(Call::Close(pane.clone()));
    }

    async fn note(&mut self) -> Note {
        match self.lose.recv().await {
            Some(n) => n,
            None => std::future::pending().await,
        }
    }

    async fn replace(&mut self) -> anyhow::Result<()> {
        self.call(Call::Replace);
        Ok(())
    }

    async fn kill_server(&mut self) {
        self.call(Call::KillServer);
    }

    fn signal(&self, pid: i32, signal: Signal) -> nix::Result<()> {
        self.call(Call::Signal { pid, signal });
        Ok(())
    }
}
