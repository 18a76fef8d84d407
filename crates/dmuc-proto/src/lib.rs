//! dmuc's control protocol, version 1: newline-delimited JSON over a Unix socket.
//!
//! Every frame is one JSON object on one line (at most [`MAX_FRAME`] bytes). A client sends
//! requests `{"id": N, "verb": "...", ...arguments}`; the daemon answers each with exactly one
//! terminal frame carrying the same id, `{"id": N, "result": {...}}` or
//! `{"id": N, "error": {"code": ..., "message": ..., "hint": ...}}`, preceded for streaming
//! verbs by any number of `{"id": N, "stream": {...}}` frames. The first request must be
//! `hello`, which carries the protocol version. docs/protocol.md has every message.
//!
//! This crate holds only types, parsing and their rendering as text (`render`): no I/O, so both
//! sides and the tests share it.

#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod render;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The protocol version this build speaks ("MAJOR.MINOR"; majors must match).
pub const VERSION: &str = "1.0";
/// Its major part.
pub const MAJOR: u32 = 1;
/// The largest frame either side accepts, newline included.
pub const MAX_FRAME: usize = 1 << 20;

/// A request: an id chosen by the client and a verb with its arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Echoed in every frame that answers this request.
    pub id: u64,
    /// What to do.
    #[serde(flatten)]
    pub verb: Verb,
}

fn yes() -> bool {
    true
}

/// The verbs and their arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verb", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Verb {
    /// Must come first: the client's protocol version.
    Hello {
        /// "MAJOR.MINOR".
        version: String,
        /// Free text naming the client, for the daemon's log.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client: Option<String>,
    },
    /// Component states; all components when `names` is empty.
    Status {
        /// Components to show.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        names: Vec<String>,
        /// Answer with the table `dmucctl status` prints ([`TextResult`]) instead of the
        /// records: for clients that parse no JSON beyond one string (dmucctl's libc-free
        /// front, docs/architecture.md "dmucctl's front").
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<TextOptions>,
    },
    /// Start components and what they depend on.
    Start(Action),
    /// Stop components and what depends on them.
    Stop(Action),
    /// Stop then start components.
    Restart(Action),
    /// Send a signal to a component's main process.
    Signal {
        /// Component.
        name: String,
        /// Name ("SIGHUP", "HUP") or number ("1").
        signal: String,
        /// Signal the whole process group instead.
        #[serde(default)]
        group: bool,
    },
    /// A component's log, from its log files.
    Logs {
        /// Component.
        name: String,
        /// Last lines to send first (default 10).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lines: Option<usize>,
        /// Keep streaming what is written next.
        #[serde(default)]
        follow: bool,
    },
    /// The event log.
    Events {
        /// Only events with a greater sequence number.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<u64>,
        /// Keep streaming new events.
        #[serde(default)]
        follow: bool,
    },
    /// The dependency graph with live states.
    Graph {},
    /// Components' definitions as dmucd runs them (variables expanded); all when `names` is
    /// empty. Not public: commands and environments may hold secrets.
    Show {
        /// Components to show.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        names: Vec<String>,
    },
    /// Re-read the config file and apply the difference.
    Reload {
        /// Only say what would change.
        #[serde(default)]
        dry_run: bool,
    },
    /// Stop every component in order, then exit.
    Shutdown {},
    /// End a stream started by this connection.
    Cancel {
        /// The id of the streaming request.
        stream: u64,
    },
}

/// Arguments of `start`, `stop`, `restart`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Action {
    /// Components.
    pub names: Vec<String>,
    /// Reply when the operation is done (default), or at once.
    #[serde(default = "yes")]
    pub wait: bool,
    /// Give up waiting after this long (the operation itself goes on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

impl Verb {
    /// The verb's name on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            Verb::Hello { .. } => "hello",
            Verb::Status { .. } => "status",
            Verb::Start(_) => "start",
            Verb::Stop(_) => "stop",
            Verb::Restart(_) => "restart",
            Verb::Signal { .. } => "signal",
            Verb::Logs { .. } => "logs",
            Verb::Events { .. } => "events",
            Verb::Graph {} => "graph",
            Verb::Show { .. } => "show",
            Verb::Reload { .. } => "reload",
            Verb::Shutdown {} => "shutdown",
            Verb::Cancel { .. } => "cancel",
        }
    }

    /// Verbs anyone allowed to connect may use; the rest need write access.
    pub fn read_only(&self) -> bool {
        matches!(
            self,
            Verb::Hello { .. } | Verb::Status { .. } | Verb::Graph {} | Verb::Cancel { .. }
        )
    }
}

/// Every verb name, for "unknown verb" hints.
pub const VERBS: &[&str] = &[
    "hello", "status", "start", "stop", "restart", "signal", "logs", "events", "graph", "show",
    "reload", "shutdown", "cancel",
];

/// One frame from the daemon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// The request answered; `null` when the request's id could not be read.
    pub id: Option<u64>,
    /// Terminal result, terminal error, or one item of a stream.
    #[serde(flatten)]
    pub body: Body,
}

/// What a reply frame carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Body {
    /// Success; ends the request.
    Result(Value),
    /// Failure; ends the request.
    Error(ErrorReply),
    /// One item of a streaming reply; more follow until a terminal frame.
    Stream(StreamItem),
}

impl Reply {
    /// A result frame.
    pub fn result(id: u64, v: impl Serialize) -> Reply {
        Reply {
            id: Some(id),
            body: Body::Result(serde_json::to_value(v).unwrap_or(Value::Null)),
        }
    }

    /// A result frame as one line, newline included: the result is serialized straight into
    /// the line, without the `Value` tree `result` builds (the daemon's status reply spent
    /// most of its time building and freeing that tree).
    pub fn result_line(id: u64, v: &impl Serialize) -> String {
        #[derive(Serialize)]
        struct Frame<'a, T> {
            id: u64,
            result: &'a T,
        }
        match serde_json::to_string(&Frame { id, result: v }) {
            Ok(mut s) => {
                s.push('\n');
                s
            }
            Err(_) => Reply::result(id, Value::Null).to_line(),
        }
    }

    /// An error frame.
    pub fn error(id: Option<u64>, e: ErrorReply) -> Reply {
        Reply {
            id,
            body: Body::Error(e),
        }
    }

    /// A stream frame.
    pub fn stream(id: u64, item: StreamItem) -> Reply {
        Reply {
            id: Some(id),
            body: Body::Stream(item),
        }
    }

    /// The frame as one line, newline included.
    pub fn to_line(&self) -> String {
        let mut s = serde_json::to_string(self).unwrap_or_else(|_| {
            r#"{"id":null,"error":{"code":"internal","message":"unserializable reply"}}"#.into()
        });
        s.push('\n');
        s
    }
}

/// Items of streaming replies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamItem {
    /// Log lines, oldest first, without their newlines.
    Lines(Vec<String>),
    /// One event.
    Event(EventRecord),
    /// This many events were not sent to this client because it read too slowly.
    Dropped(u64),
}

/// Error codes: stable, for scripts; the message is for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    /// The frame is not valid JSON (or not an object).
    ParseError,
    /// A field is missing, unknown or of the wrong type.
    BadRequest,
    /// No such verb.
    UnknownVerb,
    /// The frame exceeds [`MAX_FRAME`].
    FrameTooLarge,
    /// A request came before `hello`.
    HelloRequired,
    /// The client speaks another major version.
    VersionMismatch,
    /// No component of that name.
    UnknownComponent,
    /// The peer may not use this verb.
    PermissionDenied,
    /// The component has no process to signal.
    NotRunning,
    /// The operation ran and did not succeed (a component failed).
    Failed,
    /// The wait timed out; the operation goes on.
    Timeout,
    /// `cancel` named no stream of this connection.
    UnknownStream,
    /// `reload` found an invalid config; nothing changed.
    ConfigInvalid,
    /// `reload` found changes it cannot apply; nothing changed.
    ReloadRejected,
    /// The daemon is shutting down.
    ShuttingDown,
    /// A bug or a system error on the daemon's side.
    Internal,
    /// The daemon serves as many connections as it takes: try again when one closes.
    TooManyConnections,
    /// `logs --follow`: the daemon follows as many logs for clients as it takes (each costs
    /// an inotify instance, of which a user has 128 by default).
    TooManyFollowers,
}

/// A typed error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// Stable code.
    pub code: ErrorCode,
    /// What went wrong.
    pub message: String,
    /// What to do about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// Details, e.g. what an operation did before it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl ErrorReply {
    /// An error without hint.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorReply {
            code,
            message: message.into(),
            hint: None,
            data: None,
        }
    }

    /// Adds a hint.
    pub fn hint(mut self, h: impl Into<String>) -> Self {
        self.hint = Some(h.into());
        self
    }
}

/// Parses one frame (without its newline) into a request, or the error reply to send.
pub fn parse_request(line: &[u8]) -> Result<Request, Box<Reply>> {
    let bad = |id, code, msg: String, hint: Option<String>| {
        Box::new(Reply::error(
            id,
            ErrorReply {
                code,
                message: msg,
                hint,
                data: None,
            },
        ))
    };
    let v: Value = serde_json::from_slice(line).map_err(|e| {
        bad(
            None,
            ErrorCode::ParseError,
            format!("invalid JSON: {e}"),
            Some("send one JSON object per line".into()),
        )
    })?;
    let Value::Object(mut map) = v else {
        return Err(bad(
            None,
            ErrorCode::ParseError,
            "a request must be a JSON object".into(),
            Some(r#"e.g. {"id":1,"verb":"status"}"#.into()),
        ));
    };
    let id = match map.remove("id") {
        Some(Value::Number(n)) if n.as_u64().is_some() => n.as_u64(),
        Some(_) => {
            return Err(bad(
                None,
                ErrorCode::BadRequest,
                "`id` must be a non-negative integer".into(),
                None,
            ));
        }
        None => {
            return Err(bad(
                None,
                ErrorCode::BadRequest,
                "missing field `id`".into(),
                Some("every request carries an integer id, echoed in its replies".into()),
            ));
        }
    };
    let verb = match map.get("verb") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            return Err(bad(
                id,
                ErrorCode::BadRequest,
                "`verb` must be a string".into(),
                None,
            ));
        }
        None => {
            return Err(bad(
                id,
                ErrorCode::BadRequest,
                "missing field `verb`".into(),
                Some(format!("one of: {}", VERBS.join(", "))),
            ));
        }
    };
    if !VERBS.contains(&verb.as_str()) {
        return Err(bad(
            id,
            ErrorCode::UnknownVerb,
            format!("unknown verb `{verb}`"),
            Some(format!("one of: {}", VERBS.join(", "))),
        ));
    }
    match serde_json::from_value::<Verb>(Value::Object(map)) {
        Ok(verb) => Ok(Request {
            id: id.unwrap_or_default(),
            verb,
        }),
        Err(e) => Err(bad(
            id,
            ErrorCode::BadRequest,
            format!("bad arguments for `{verb}`: {e}"),
            Some("see docs/protocol.md for each verb's fields".into()),
        )),
    }
}

/// A component's state, as the protocol names it (docs/glossary.md): the same enum in dmucd
/// (`dmuc_core::State::kind`), on the wire (its lowercase name) and in dmucctl.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Wanted, waiting for its dependencies.
    Pending,
    /// Launched; no PID yet, or its ready probe has not passed.
    Starting,
    /// Its program runs (no ready probe).
    Running,
    /// Its program runs and its ready probe passed.
    Ready,
    /// Asked to stop; its program has not exited yet.
    Stopping,
    /// Stopped on request.
    Stopped,
    /// Exited with status 0 and not restarted.
    Exited,
    /// Waiting before a restart.
    Backoff,
    /// Given up on (start limit, or an exit not restarted).
    Failed,
    /// A oneshot that exited 0.
    Completed,
    /// A state this client does not know (a newer daemon's).
    #[serde(other)]
    Unknown,
}

impl State {
    /// Every state, in the order of the lifecycle (for tests and tables).
    pub const ALL: [State; 10] = [
        State::Pending,
        State::Starting,
        State::Running,
        State::Ready,
        State::Stopping,
        State::Stopped,
        State::Exited,
        State::Backoff,
        State::Failed,
        State::Completed,
    ];

    /// Its name on the wire and on screen.
    pub fn name(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Starting => "starting",
            State::Running => "running",
            State::Ready => "ready",
            State::Stopping => "stopping",
            State::Stopped => "stopped",
            State::Exited => "exited",
            State::Backoff => "backoff",
            State::Failed => "failed",
            State::Completed => "completed",
            State::Unknown => "unknown",
        }
    }

    /// Whether it counts as up: what `N/M up` in the status line, the overview and
    /// `status --watch` counts, and what is shown green. The one place that decides it.
    pub fn is_up(self) -> bool {
        matches!(self, State::Ready | State::Running | State::Completed)
    }

    /// Down on purpose or for good: not something to wait for.
    pub fn is_settled_down(self) -> bool {
        matches!(self, State::Stopped | State::Exited)
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

/// True when `client` ("MAJOR.MINOR") can talk to this daemon.
pub fn compatible(client: &str) -> bool {
    client
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok())
        .is_some_and(|m| m == MAJOR)
}

/// How `status` renders its table when asked for text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextOptions {
    /// ANSI colours (the client prints to a terminal and `NO_COLOR` is unset).
    #[serde(default)]
    pub color: bool,
}

/// `status`'s result when asked for text: exactly what `dmucctl status` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextResult {
    /// The table, newline-terminated lines.
    pub text: String,
}

/// `hello`'s result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HelloResult {
    /// The daemon's protocol version.
    pub version: String,
    /// The daemon's program version.
    pub server: String,
    /// The daemon's PID.
    pub pid: u32,
    /// The peer's uid as the daemon saw it.
    pub uid: u32,
    /// The peer may use mutating verbs.
    pub can_write: bool,
}

/// `status`'s result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusResult {
    /// About the daemon.
    pub daemon: DaemonInfo,
    /// The components asked for, in config order.
    pub components: Vec<ComponentStatus>,
}

/// About the daemon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DaemonInfo {
    /// PID.
    pub pid: u32,
    /// Program version.
    pub version: String,
    /// Since when it runs.
    pub uptime_ms: u64,
    /// The config file.
    pub config: String,
    /// tmux socket (for `attach`).
    pub tmux_socket: String,
    /// tmux session.
    pub session: String,
    /// Log directory.
    pub log_dir: String,
    /// Shutting down.
    pub stopping: bool,
    /// The `--var` values it was started with: what the cluster it runs was made with, and
    /// what `dmucctl reset` must use too.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub vars: std::collections::BTreeMap<String, String>,
}

/// One component's status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentStatus {
    /// Name.
    pub name: String,
    /// "service" or "oneshot".
    pub kind: String,
    /// State (see docs/glossary.md).
    pub state: State,
    /// Main process PID when running.
    pub pid: Option<u32>,
    /// Current run number.
    pub run: u64,
    /// Restarts by policy.
    pub restarts: u32,
    /// Time since the current run was launched, while it runs.
    pub uptime_ms: Option<u64>,
    /// Time in the current state.
    pub since_ms: Option<u64>,
    /// Ready probe verdict: `None` without a ready probe.
    pub ready: Option<bool>,
    /// How the last run ended.
    pub last_exit: Option<String>,
    /// Why it is pending, failed or still starting.
    pub reason: Option<String>,
    /// tmux window id.
    pub window: Option<String>,
    /// Why its log file cannot be written, while it cannot (the component keeps running).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_error: Option<String>,
}

/// One event of the event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// Sequence number, increasing by one, kept across daemon restarts.
    pub seq: u64,
    /// Wall-clock time, microseconds since the Unix epoch.
    pub ts_us: u64,
    /// The component, when the event is about one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    /// What happened.
    #[serde(flatten)]
    pub what: EventWhat,
}

/// How the `daemon` event begins that dmucd writes when it starts the graph (not when it
/// adopts a previous dmucd's components: they were started before). `dmucctl analyze` starts
/// its window there.
pub const BOOT_EVENT: &str = "started the graph";

/// How the `daemon` event begins that dmucd writes when the graph it started first settles:
/// every component wanted up is up or has given up, what `READY=1` waits for. `dmucctl
/// analyze` and `plot` end their window there unless told `--until`.
pub const SETTLED_EVENT: &str = "the graph settled";

/// What an event says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventWhat {
    /// A state change.
    State {
        /// Old state.
        from: State,
        /// New state.
        to: State,
        /// Why.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A run ended.
    Exit {
        /// Its PID.
        pid: Option<u32>,
        /// Exit code, when it exited.
        code: Option<i32>,
        /// Signal number, when killed.
        signal: Option<i32>,
        /// Human-readable status.
        status: String,
        /// The last lines of its log.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tail: Vec<String>,
    },
    /// A probe's verdict changed.
    Probe {
        /// "ready" or "liveness".
        role: String,
        /// Verdict.
        ok: bool,
        /// Failure detail.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// The component's log file stopped (`ok: false`) or started again to be written.
    Log {
        /// Writable again.
        ok: bool,
        /// Why not.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// About the daemon itself.
    Daemon {
        /// What.
        message: String,
    },
    /// A run's program is running (its PID known): sent for components with a ready probe,
    /// which have no `running` state to say it (usually before `ready`; after it when the
    /// probe passed before the shim's report was read).
    Spawned {
        /// Its PID.
        pid: u32,
    },
    /// A crash loop: the component exited `[daemon] crash-loop-exits` times within
    /// `crash-loop-window`, and its loop's events (exits, spawns, probe verdicts, its moves
    /// among starting, running, ready and backoff) are coalesced into one of these per 100
    /// exits or per window, until it settles (no exit for a window) or moves elsewhere.
    CrashLoop {
        /// `begin`, `ongoing` or `over`.
        phase: LoopPhase,
        /// Exits in this record's span.
        exits: u32,
        /// Events of that span left out of the log.
        held: u32,
        /// How long the span lasted, in milliseconds.
        span_ms: u64,
        /// The last exit's status.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        last_exit: String,
    },
    /// An event of a newer daemon this client does not know.
    #[serde(other)]
    Other,
}

/// Where a crash loop is, in its [`EventWhat::CrashLoop`] records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoopPhase {
    /// It began: the exits that made it one were logged one by one.
    Begin,
    /// Still looping: what the span held back.
    Ongoing,
    /// Over: what the last span held back; the events after it are logged again.
    Over,
}

/// `start`/`stop`/`restart`'s result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionResult {
    /// Waited until done (false with `wait: false`).
    pub done: bool,
    /// The state changes it caused, in order.
    pub changes: Vec<EventRecord>,
}

/// `reload`'s result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReloadResult {
    /// Something changed (false: the file is unchanged, or `dry_run`).
    pub applied: bool,
    /// Components that start.
    pub add: Vec<String>,
    /// Components that stop (dependents first).
    pub remove: Vec<String>,
    /// Components whose definition changed (restarted when running).
    pub change: Vec<String>,
    /// Components left alone (same PID).
    pub keep: Vec<String>,
    /// Of `change`, those restarted now: running, or a oneshot that had completed (it runs
    /// again). The others take their new definition at their next start.
    #[serde(default)]
    pub restart: Vec<String>,
    /// Unchanged components restarted because they wait for a re-run oneshot with
    /// `condition = "completed"` (they read what it makes): they start again once it has
    /// completed.
    #[serde(default)]
    pub follow: Vec<String>,
}

/// `graph`'s result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphResult {
    /// Components, in config order.
    pub nodes: Vec<GraphNode>,
    /// Dependencies.
    pub edges: Vec<GraphEdge>,
}

/// A node of the graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphNode {
    /// Name.
    pub name: String,
    /// Start level (0 = no dependencies).
    pub level: usize,
    /// Current state.
    pub state: State,
}

/// `from` waits for `to` to reach `condition`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphEdge {
    /// The dependent.
    pub from: String,
    /// The dependency.
    pub to: String,
    /// "started", "ready" or "completed".
    pub condition: String,
}

/// `show`'s result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShowResult {
    /// The components asked for, in config order.
    pub components: Vec<ComponentSpec>,
}

/// One component's definition, as dmucd runs it: what `dmucctl backup` reads etcd's flags
/// from, and what `dmucctl show` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentSpec {
    /// Name.
    pub name: String,
    /// "service" or "oneshot".
    pub kind: String,
    /// argv, variables expanded.
    pub command: Vec<String>,
    /// Extra environment, in file order.
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Its `env-file` (`-PATH` when a missing file is fine), read at each start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_file: Option<String>,
    /// Its `args-file` (`-PATH` when a missing file is fine), read at each start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args_file: Option<String>,
    /// The directory it runs in: its `cwd`, else dmucd's own.
    pub cwd: String,
    /// User to run as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Group to run as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// What it waits for (as `graph`'s edges, `from` being this component).
    #[serde(default)]
    pub after: Vec<GraphEdge>,
    /// The components whose start starts this one too (`wanted-by`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wanted_by: Vec<String>,
    /// Its log file.
    pub log: String,
}

#[cfg(test)]
mod tests;
