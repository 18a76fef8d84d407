//! The runtime against the fake backend, in paused time: the test plays the shims and tmux,
//! and tokio's clock advances only when every task waits, straight to the next timer. So a
//! 10 s deadline takes no real time, and what the runtime does at each instant is exact:
//! whatever was due before the test's clock reached a point has run when it gets there.

use std::collections::HashMap;
use std::time::Duration;

use dmuc_proto::{Body, ComponentStatus, Reply, StatusResult};
use tokio::sync::mpsc::UnboundedReceiver;

use super::*;
use crate::backend::FoundPane;
use crate::backend::fake::{self, Call, Fake};

/// One runtime on the fake backend, its files in a temporary directory.
struct Rig {
    tx: mpsc::UnboundedSender<Msg>,
    fake: fake::Handle,
    dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    /// What the runtime sent each component's (played) shim, and its connection id.
    shims: HashMap<String, (UnboundedReceiver<ToShim>, u64)>,
    next_link: u64,
    next_req: u64,
}

fn paths_in(dir: &std::path::Path) -> Paths {
    let p = Paths {
        socket: dir.join("dmucd.sock"),
        tmux_socket: dir.join("tmux.sock"),
        runtime_dir: dir.join("run"),
        log_dir: dir.join("log"),
        state_dir: dir.join("state"),
    };
    for d in [&p.runtime_dir.join("spec"), &p.log_dir, &p.state_dir] {
        std::fs::create_dir_all(d).unwrap();
    }
    p
}

impl Rig {
    fn start(toml: &str) -> Rig {
        Rig::adopting(toml, |_| None)
    }

    /// A runtime that starts by adopting what `adoption` (given the config) describes.
    fn adopting(toml: &str, adoption: impl FnOnce(&Config) -> Option<Adoption>) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("graph.toml");
        std::fs::write(&path, toml).unwrap();
        let cfg = crate::load_config(&path, &Default::default()).unwrap();
        let adoption = adoption(&cfg);
        let paths = paths_in(dir.path());
        let (backend, handle): (Fake, _) = fake::new();
        let (tx, rx) = mpsc::unbounded_channel();
        let rt = Runtime::new(
            cfg,
            path,
            crate::Overrides::default(),
            paths,
            backend,
            (tx.clone(), rx),
            adoption,
        );
        Rig {
            tx,
            fake: handle,
            dir,
            task: tokio::spawn(rt.run()),
            shims: HashMap::new(),
            next_link: 0,
            next_req: 0,
        }
    }

    /// Replaces the config file (for a reload).
    fn rewrite(&self, toml: &str) {
        std::fs::write(self.dir.path().join("graph.toml"), toml).unwrap();
    }

    /// The shim of `name`'s run `run` connects (a new connection, as a newly launched shim's;
    /// its PID is `shim_pid`'s).
    fn shim_links(&mut self, name: &str, run: u64) {
        self.next_link += 1;
        let (tx, rx) = mpsc::unbounded_channel();
        self.shims.insert(name.into(), (rx, self.next_link));
        self.send(Msg::ShimLink {
            name: name.into(),
            run,
            link: self.next_link,
            pid: Some(shim_pid(self.next_link)),
            tx,
        });
    }

    /// The PID of `name`'s last connected shim.
    fn shim_of(&self, name: &str) -> u32 {
        shim_pid(self.shims[name].1)
    }

    /// The shim of `name`'s run `run` connects and reports its program's PID (as a shim
    /// that has a terminal: one being adopted).
    fn shim_starts(&mut self, name: &str, run: u64, pid: u32) {
        self.shim_links(name, run);
        self.shim_says(name, run, ShimWhat::Start(pid));
    }

    /// A shim the runtime launched connects: it has no terminal yet and says so, then
    /// reports its program's PID.
    fn new_shim(&mut self, name: &str, run: u64, pid: u32) {
        self.shim_links(name, run);
        self.shim_says(name, run, ShimWhat::ViewLost);
        self.shim_says(name, run, ShimWhat::Start(pid));
    }

    /// The next view window opened for `name`: the pane it reuses, the shim it shows.
    async fn view_opened(&mut self, name: &str) -> (Option<Pane>, Option<u32>) {
        match self
            .fake
            .expect(
                &format!("a window for {name}"),
                |c| matches!(c, Call::OpenView { name: n, .. } if n == name),
            )
            .await
        {
            Call::OpenView { pane, shim, .. } => (pane, shim),
            _ => unreachable!(),
        }
    }

    /// `name`'s shim is handed its window's terminal and says it took it.
    async fn shim_shown(&mut self, name: &str, run: u64) {
        assert!(matches!(self.heard_by_shim(name).await, ToShim::View(_)));
        self.shim_says(name, run, ShimWhat::ViewOk);
    }

    fn shim_says(&self, name: &str, run: u64, what: ShimWhat) {
        self.send(Msg::Shim {
            name: name.into(),
            run,
            what,
        });
    }

    /// The shim's connection closes (the shim is gone).
    fn shim_closes(&self, name: &str) {
        self.send(Msg::ShimClosed {
            name: name.into(),
            link: self.shims[name].1,
        });
    }

    fn send(&self, m: Msg) {
        self.tx.send(m).unwrap();
    }

    /// What the runtime next says to `name`'s shim.
    async fn heard_by_shim(&mut self, name: &str) -> ToShim {
        let (rx, _) = self.shims.get_mut(name).unwrap();
        tokio::time::timeout(Duration::from_secs(600), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("nothing said to {name}'s shim"))
            .unwrap()
    }

    /// Whether the runtime said nothing to `name`'s shim so far.
    fn shim_heard_nothing(&mut self, name: &str) -> bool {
        self.shims.get_mut(name).unwrap().0.try_recv().is_err()
    }

    /// The next launch of `name`: its run.
    async fn launched(&mut self, name: &str) -> u64 {
        match self
            .fake
            .expect(
                &format!("launch of {name}"),
                |c| matches!(c, Call::Launch { name: n, .. } if n == name),
            )
            .await
        {
            Call::Launch { run, .. } => run,
            _ => unreachable!(),
        }
    }

    /// The next signal sent.
    async fn signalled(&mut self) -> (i32, Signal) {
        match self
            .fake
            .expect("a signal", |c| matches!(c, Call::Signal { .. }))
            .await
        {
            Call::Signal { pid, signal } => (pid, signal),
            _ => unreachable!(),
        }
    }

    /// Sends a control request (JSON without its id) and returns its terminal reply. The
    /// actor takes messages in order: the answer reflects everything sent before.
    async fn request(&mut self, verb: &str) -> Body {
        self.next_req += 1;
        let id = self.next_req;
        let line = format!(r#"{{"id":{id},{verb}}}"#);
        let req = dmuc_proto::parse_request(line.as_bytes()).unwrap();
        let (ctl, mut ctl_rx) = mpsc::channel(16);
        let (bulk, _bulk_rx) = mpsc::channel(16);
        let peer = crate::conn::Peer {
            uid: 0,
            pid: None,
            can_write: true,
            can_read: true,
        };
        let conn = Conn::new(id, peer, ctl, bulk, Default::default());
        self.send(Msg::Control { conn, req });
        let line = tokio::time::timeout(Duration::from_secs(600), ctl_rx.recv())
            .await
            .expect("no reply")
            .expect("the reply channel closed");
        serde_json::from_str::<Reply>(&line).unwrap().body
    }

    async fn status(&mut self) -> Vec<ComponentStatus> {
        match self.request(r#""verb":"status""#).await {
            Body::Result(v) => {
                serde_json::from_value::<StatusResult>(v)
                    .unwrap()
                    .components
            }
            other => panic!("status: {other:?}"),
        }
    }

    async fn state(&mut self, name: &str) -> ComponentStatus {
        self.status()
            .await
            .into_iter()
            .find(|c| c.name == name)
            .unwrap()
    }

    /// Every component's state name, in config order.
    async fn states(&mut self) -> Vec<&'static str> {
        self.status()
            .await
            .into_iter()
            .map(|c| c.state.name())
            .collect()
    }

    /// The clock reaches `t` (paused time: everything due before it has run then).
    async fn at(&self, t: Instant) {
        tokio::time::sleep_until(t).await;
    }

    /// Calls made so far, besides the display's (marks, summary, overview).
    fn actions(&mut self) -> Vec<Call> {
        self.fake
            .drain()
            .into_iter()
            .filter(|c| !matches!(c, Call::Show { .. } | Call::Overview(_)))
            .collect()
    }
}

/// The PID the played shim of connection `link` has.
fn shim_pid(link: u64) -> u32 {
    5000 + link as u32
}

/// What a view window's terminal received (once every writer of it is closed).
fn view_text(r: &Rig, name: &str) -> String {
    let mut view = std::fs::File::from(r.fake.view_of(name).unwrap());
    let mut text = String::new();
    std::io::Read::read_to_string(&mut view, &mut text).unwrap();
    text
}

const ONE: &str = r#"
[component.a]
command = ["/bin/sh"]
backoff = { initial = "1s", max = "30s", factor = 2.0, reset-after = "60s" }
"#;

#[tokio::test(start_paused = true)]
async fn a_program_runs_before_its_window_exists_and_restarts_in_place_in_it() {
    let mut r = Rig::start(ONE);
    assert_eq!(r.launched("a").await, 1);
    // The shim runs the program at once, then its window is opened for it.
    r.new_shim("a", 1, 100);
    let a = r.state("a").await;
    assert_eq!(
        (a.state.name(), a.pid, a.window),
        ("running", Some(100), None)
    );
    let shim = r.shim_of("a");
    assert_eq!(r.view_opened("a").await, (None, Some(shim)));
    r.shim_shown("a", 1).await;
    // Its first window: the shim shows its own output so far, dmucd writes nothing.
    assert_eq!(view_text(&r, "a"), "");
    let window = r.state("a").await.window.expect("a window");
    // It fails: run 2 starts in place through the same shim, in the same window.
    r.shim_says("a", 1, ShimWhat::Exit(ExitStatus::Code(1)));
    assert!(matches!(r.heard_by_shim("a").await, ToShim::Run(2)));
    r.shim_says("a", 2, ShimWhat::Start(101));
    let acted = r.actions();
    assert!(
        !acted
            .iter()
            .any(|c| matches!(c, Call::Launch { .. } | Call::OpenView { .. })),
        "{acted:#?}"
    );
    assert_eq!(r.state("a").await.window.as_deref(), Some(window.as_str()));
    // Its shim goes away with the program: run 3 is a new shim, after the second backoff
    // (2 s), and its window reuses the pane.
    r.shim_says("a", 2, ShimWhat::Exit(ExitStatus::Code(1)));
    r.shim_closes("a");
    let exited = Instant::now();
    assert_eq!(r.launched("a").await, 3);
    assert_eq!(exited.elapsed(), Duration::from_secs(2));
    r.new_shim("a", 3, 102);
    let (pane, for_shim) = r.view_opened("a").await;
    assert_eq!(pane.map(|p| p.window), Some(window));
    assert_eq!(for_shim, Some(r.shim_of("a")));
}

#[tokio::test(start_paused = true)]
async fn a_window_opened_for_a_shim_replaced_meanwhile_is_opened_again_for_the_new_one() {
    let mut r = Rig::start(ONE);
    r.fake.hold(true); // tmux is slow to open windows
    assert_eq!(r.launched("a").await, 1);
    r.new_shim("a", 1, 100);
    let first = r.shim_of("a");
    assert_eq!(r.view_opened("a").await, (None, Some(first)));
    // The program and its shim end before the window is open; run 2's shim connects.
    r.shim_says("a", 1, ShimWhat::Exit(ExitStatus::Code(1)));
    r.shim_closes("a");
    assert_eq!(r.launched("a").await, 2);
    r.new_shim("a", 2, 101);
    let second = r.shim_of("a");
    // One window at a time: nothing more until tmux answers.
    let acted = r.actions();
    assert!(
        !acted.iter().any(|c| matches!(c, Call::OpenView { .. })),
        "{acted:#?}"
    );
    let pane = r.fake.answer("a");
    // That window was for the first shim (it ends with it): the same pane, for the second.
    assert_eq!(r.view_opened("a").await, (Some(pane), Some(second)));
    assert!(r.shim_heard_nothing("a"));
    r.fake.answer("a");
    r.shim_shown("a", 2).await;
}

#[tokio::test(start_paused = true)]
async fn a_launch_that_cannot_start_its_shim_costs_its_run_and_backs_off() {
    let mut r = Rig::start(ONE);
    r.fake.fail_launches(true);
    assert_eq!(r.launched("a").await, 1);
    let launched = Instant::now();
    r.fake.fail_launches(false);
    assert_eq!(r.launched("a").await, 2);
    assert_eq!(launched.elapsed(), Duration::from_secs(1));
    let a = r.state("a").await;
    assert!(
        a.last_exit
            .as_deref()
            .is_some_and(|e| e.contains("cannot start its shim")),
        "{a:?}"
    );
    r.new_shim("a", 2, 200);
    assert_eq!(r.state("a").await.state.name(), "running");
}

#[tokio::test(start_paused = true)]
async fn a_shim_that_never_reports_costs_its_run_after_the_deadline() {
    let mut r = Rig::start(ONE);
    assert_eq!(r.launched("a").await, 1);
    let launched = Instant::now();
    r.at(launched + SHIM_DEADLINE - Duration::from_millis(1))
        .await;
    assert_eq!(r.state("a").await.state, dmuc_proto::State::Starting);
    // The deadline passes, then the backoff: run 2.
    assert_eq!(r.launched("a").await, 2);
    assert_eq!(launched.elapsed(), SHIM_DEADLINE + Duration::from_secs(1));
    let a = r.state("a").await;
    assert!(
        a.last_exit
            .as_deref()
            .is_some_and(|e| e.contains("did not report a PID within 10s")),
        "{a:?}"
    );
    // A shim that reports in time disarms its deadline: nothing happens at run 2's.
    r.new_shim("a", 2, 200);
    r.at(Instant::now() + SHIM_DEADLINE * 2).await;
    let a = r.state("a").await;
    assert_eq!((a.state.name(), a.run, a.pid), ("running", 2, Some(200)));
}

const TWO: &str = r#"
[component.a]
command = ["/bin/sh"]
stop = { timeout = "3s" }

[component.b]
command = ["/bin/sh"]
after = ["a"]
stop = { timeout = "3s" }
"#;

/// Starts `TWO` with a and b running (pids 100 and 101) in their windows; returns their
/// panes.
async fn two_running(r: &mut Rig) -> (Pane, Pane) {
    assert_eq!(r.launched("a").await, 1);
    r.new_shim("a", 1, 100);
    assert_eq!(r.launched("b").await, 1);
    r.new_shim("b", 1, 101);
    for name in ["a", "b"] {
        r.view_opened(name).await;
        r.shim_shown(name, 1).await;
    }
    assert_eq!(r.states().await, ["running", "running"]);
    let s = r.status().await;
    let pane = |w: &Option<String>| Pane {
        window: w.clone().unwrap(),
        pane: w.clone().unwrap().replace('@', "%"),
    };
    (pane(&s[0].window), pane(&s[1].window))
}

#[tokio::test(start_paused = true)]
async fn a_shutdown_stops_in_reverse_order_and_kills_what_outlives_its_timeout() {
    let mut r = Rig::start(TWO);
    two_running(&mut r).await;
    r.fake.drain();
    r.send(Msg::Stop);
    // b first; a only once b is gone.
    assert_eq!(r.signalled().await, (-101, Signal::SIGTERM));
    let asked = Instant::now();
    assert_eq!(r.signalled().await, (-101, Signal::SIGKILL));
    assert_eq!(asked.elapsed(), Duration::from_secs(3));
    r.shim_says(
        "b",
        1,
        ShimWhat::Exit(ExitStatus::Signal {
            signal: 9,
            core: false,
        }),
    );
    assert_eq!(r.signalled().await, (-100, Signal::SIGTERM));
    r.shim_says("a", 1, ShimWhat::Exit(ExitStatus::Code(0)));
    r.fake
        .expect("kill-server", |c| *c == Call::KillServer)
        .await;
    r.task.await.unwrap().unwrap();
    assert!(
        !r.fake
            .seen
            .iter()
            .any(|c| matches!(c, Call::Signal { pid: -100, signal } if *signal == Signal::SIGKILL)),
        "a stopped in time and was not killed"
    );
}

#[tokio::test(start_paused = true)]
async fn a_reload_moves_every_slot_with_its_component() {
    // As TWO, but b does not need a (b would be restarted: its definition changes).
    let mut r = Rig::start(&TWO.replace("after = [\"a\"]\n", ""));
    let (pane_a, pane_b) = two_running(&mut r).await;
    // c comes first in the new file (every index moves), a goes, b stays.
    r.rewrite(
        r#"
[component.c]
command = ["/bin/sh"]

[component.b]
command = ["/bin/sh"]
stop = { timeout = "3s" }
"#,
    );
    r.fake.drain();
    assert!(matches!(
        r.request(r#""verb":"reload""#).await,
        Body::Result(_)
    ));
    assert_eq!(r.signalled().await, (-100, Signal::SIGTERM));
    r.shim_says("a", 1, ShimWhat::Exit(ExitStatus::Code(0)));
    // Once stopped, a leaves: its shim is told to quit and its window closes.
    r.fake
        .expect("a's window closed", |c| *c == Call::Close(pane_a.clone()))
        .await;
    assert!(matches!(r.heard_by_shim("a").await, ToShim::Quit));
    assert_eq!(r.launched("c").await, 1);
    r.new_shim("c", 1, 102);
    let s = r.status().await;
    let names: Vec<_> = s.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["c", "b"]);
    // b kept its process, run, window, and shim.
    assert_eq!(
        (s[1].state.name(), s[1].pid, s[1].run, s[1].window.clone()),
        ("running", Some(101), 1, Some(pane_b.window.clone()))
    );
    assert_eq!(s[0].state, dmuc_proto::State::Running);
    // b's timers moved with it: its stop still escalates after its own 3 s.
    r.fake.drain();
    assert!(matches!(
        r.request(r#""verb":"stop","names":["b"],"wait":false"#)
            .await,
        Body::Result(_)
    ));
    assert_eq!(r.signalled().await, (-101, Signal::SIGTERM));
    let asked = Instant::now();
    assert_eq!(r.signalled().await, (-101, Signal::SIGKILL));
    assert_eq!(asked.elapsed(), Duration::from_secs(3));
    let b_launches = r
        .fake
        .seen
        .iter()
        .filter(|c| matches!(c, Call::Launch { name, .. } if name == "b"))
        .count();
    assert_eq!(b_launches, 1, "b was launched once, before the reload");
}

#[tokio::test(start_paused = true)]
async fn a_lost_tmux_server_costs_no_process_and_every_shim_gets_a_window() {
    let mut r = Rig::start(TWO);
    two_running(&mut r).await;
    r.fake.drain();
    r.fake.lose_server();
    r.fake.expect("a new server", |c| *c == Call::Replace).await;
    for name in ["a", "b"] {
        let shim = r.shim_of(name);
        assert_eq!(r.view_opened(name).await, (None, Some(shim)));
    }
    for name in ["a", "b"] {
        r.shim_shown(name, 1).await;
    }
    // The new window starts with a banner and the log's last lines.
    let text = view_text(&r, "a");
    assert!(
        text.starts_with("[dmuc] a (run 1, pid 100) kept running"),
        "{text:?}"
    );
    assert!(
        text.ends_with("live output continues here:\r\n"),
        "{text:?}"
    );
    let s = r.status().await;
    for (c, pid) in s.iter().zip([100, 101]) {
        assert_eq!(
            (c.state.name(), c.pid, c.run, c.restarts),
            ("running", Some(pid), 1, 0)
        );
        assert!(c.window.is_some());
    }
    let acted: Vec<Call> = r
        .actions()
        .into_iter()
        .filter(|c| matches!(c, Call::Launch { .. } | Call::Signal { .. }))
        .collect();
    assert!(acted.is_empty(), "{acted:#?}");
    // A window closed by an operator: the shim says its terminal hung up, and gets another.
    r.shim_says("a", 1, ShimWhat::ViewLost);
    r.fake
        .expect(
            "a window for a again",
            |c| matches!(c, Call::OpenView { name, pane: Some(_), .. } if name == "a"),
        )
        .await;
    assert!(matches!(r.heard_by_shim("a").await, ToShim::View(_)));
}

#[tokio::test(start_paused = true)]
async fn a_window_being_opened_on_a_server_that_died_is_void_and_opened_on_the_new_one() {
    let mut r = Rig::start(ONE);
    r.fake.hold(true);
    assert_eq!(r.launched("a").await, 1);
    r.new_shim("a", 1, 100);
    r.view_opened("a").await;
    r.fake.lose_server();
    r.fake.expect("a new server", |c| *c == Call::Replace).await;
    assert_eq!(r.view_opened("a").await.0, None);
    // The dead server's answer arrives late: ignored (its terminal is not handed over).
    r.fake.answer("a");
    r.at(Instant::now() + Duration::from_secs(1)).await;
    assert!(r.shim_heard_nothing("a"));
    assert_eq!(r.state("a").await.window, None);
    // The new server's is handed over.
    let pane = r.fake.answer("a");
    r.shim_shown("a", 1).await;
    assert_eq!(r.state("a").await.window, Some(pane.window));
    let a = r.state("a").await;
    assert_eq!((a.pid, a.run, a.restarts), (Some(100), 1, 0));
}

#[tokio::test(start_paused = true)]
async fn adoption_keeps_what_is_the_same_process_and_decides_the_rest() {
    const THREE: &str = r#"
[component.a]
command = ["/bin/sh"]

[component.b]
command = ["/bin/sh"]

[component.c]
command = ["/bin/sh"]
"#;
    // This test's own process stands for a's program: its start time is real.
    let me = std::process::id();
    let pane = |n: u32| Pane {
        window: format!("@{n}"),
        pane: format!("%{n}"),
    };
    let found = |n: u32, component: &str| FoundPane {
        pane: pane(n),
        component: component.into(),
        dead: false,
    };
    let mut r = Rig::adopting(THREE, |cfg| {
        let def = |name: &str| cfg.graph.components()[cfg.graph.index_of(name).unwrap()].clone();
        let rec = |name: &str, run, pid, start| crate::adopt::CompRecord {
            name: name.into(),
            run,
            pid,
            start,
            hash: crate::adopt::definition_hash(&def(name)),
            restarts: 2,
            state: dmuc_proto::State::Running,
            last_exit: None,
        };
        Some(Adoption {
            // z is a component the config no longer has.
            panes: vec![found(1, "a"), found(2, "b"), found(3, "z")],
            record: Some(crate::adopt::Record {
                daemon_pid: 1,
                components: vec![
                    rec("a", 3, Some(me), crate::adopt::start_ticks(me)),
                    rec("b", 1, Some(999_999), Some(1)),
                ],
            }),
        })
    });
    let began = Instant::now();
    r.shim_starts("a", 3, me);
    r.shim_starts("z", 1, 4242);
    // z is stopped, told to quit, and its window closed.
    assert_eq!(r.signalled().await, (-4242, Signal::SIGTERM));
    r.fake
        .expect("z's window closed", |c| *c == Call::Close(pane(3)))
        .await;
    assert!(matches!(r.heard_by_shim("z").await, ToShim::Quit));
    // b's shim never comes back: after the adoption deadline it starts anew (run 2), and its
    // window reuses its pane; c, which nothing ran, starts at the same time.
    assert_eq!((r.launched("b").await, r.launched("c").await), (2, 1));
    r.new_shim("b", 2, 300);
    assert_eq!(r.view_opened("b").await.0, Some(pane(2)));
    // b's history carried over from the record, as for a component that left no pane.
    assert_eq!(r.state("b").await.restarts, 2);
    assert_eq!(began.elapsed(), ADOPT_DEADLINE);
    // a is adopted as it was: same process, run and restarts, not launched.
    let a = r.state("a").await;
    assert_eq!(
        (a.state.name(), a.pid, a.run, a.restarts, a.window),
        ("running", Some(me), 3, 2, Some("@1".into()))
    );
    assert!(
        !r.fake.seen.iter().any(|c| matches!(c, Call::Launch { name, .. } if name == "a")
            || matches!(c, Call::Signal { pid, .. } if *pid == me as i32 || *pid == -(me as i32))),
        "{:#?}",
        r.fake.seen
    );
}

/// The Overview's CPU and memory columns: read from /proc while a client shows it, every
/// USAGE_EVERY; when nobody does, the columns go and nothing is read (no timer at all).
#[tokio::test(start_paused = true)]
async fn the_overview_shows_cpu_and_memory_only_while_someone_watches_it() {
    let mut r = Rig::start(ONE);
    assert_eq!(r.launched("a").await, 1);
    // Run 1's PID is no process (pid_max is at most 2^22); run 2's is this test process, a
    // real group in /proc, with memory.
    r.new_shim("a", 1, 1 << 23);
    r.view_opened("a").await;
    r.shim_shown("a", 1).await;
    let is_overview = |c: &Call| matches!(c, Call::Overview(_));
    let row_of = |c: Call| match c {
        Call::Overview(t) => t.lines().find(|l| l.starts_with("a ")).map(str::to_string),
        _ => unreachable!(),
    };
    let header = |c: &Call| matches!(c, Call::Overview(t) if t.contains("CPU%"));
    r.fake.drain();
    r.fake.watch_overview(true);
    let row = row_of(r.fake.expect("a watched overview", header).await).unwrap();
    assert!(
        !row.contains('M') && !row.contains('K'),
        "no process, no memory: {row}"
    );
    // Run 2, with a process: the next sample, within USAGE_EVERY, shows its memory.
    r.shim_says("a", 1, ShimWhat::Exit(ExitStatus::Code(1)));
    assert!(matches!(r.heard_by_shim("a").await, ToShim::Run(2)));
    r.shim_says("a", 2, ShimWhat::Start(std::process::id()));
    let started = Instant::now();
    loop {
        let c = r.fake.expect("a's memory", is_overview).await;
        if row_of(c).is_some_and(|l| l.contains('M')) {
            break;
        }
    }
    assert!(started.elapsed() <= USAGE_EVERY, "{:?}", started.elapsed());
    r.fake.watch_overview(false);
    loop {
        let c = r.fake.expect("the overview unwatched", is_overview).await;
        if !header(&c) {
            break;
        }
    }
    // Nobody looks: a minute passes without a single frame.
    r.fake.drain();
    tokio::time::sleep(Duration::from_secs(60)).await;
    let frames: Vec<Call> = r.fake.drain().into_iter().filter(is_overview).collect();
    assert!(frames.is_empty(), "{frames:#?}");
}

/// What the runtime logs, for the tests of what it says.
#[derive(Clone, Default)]
struct Logged(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Logged {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Logged {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logged {
    type Writer = Logged;
    fn make_writer(&'a self) -> Logged {
        self.clone()
    }
}

#[tokio::test(start_paused = true)]
async fn a_first_window_is_no_fault_and_a_lost_one_is_said() {
    let logged = Logged::default();
    let _log = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer(logged.clone())
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .finish(),
    );
    let mut r = Rig::start(ONE);
    assert_eq!(r.launched("a").await, 1);
    // A shim just launched asks for its first window: nothing went away.
    r.new_shim("a", 1, 100);
    r.view_opened("a").await;
    r.shim_shown("a", 1).await;
    assert!(!logged.text().contains("went away"), "{}", logged.text());
    // Its window closed: that is said, and it gets another.
    r.shim_says("a", 1, ShimWhat::ViewLost);
    r.fake
        .expect(
            "a window for a again",
            |c| matches!(c, Call::OpenView { name, .. } if name == "a"),
        )
        .await;
    assert!(
        logged.text().contains("its window went away"),
        "{}",
        logged.text()
    );
}
