//! Test harness shared by the machine and wait tests: a supervisor driven by hand.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::machine::{Effect, Input, ProbeRole, Supervisor};
use crate::state::{ExitStatus, State};

pub(crate) struct H {
    pub s: Supervisor,
    pub t0: Instant,
    pub now: Instant,
}

impl H {
    pub fn new(toml: &str) -> H {
        let cfg = dmuc_config::parse_config(toml, Path::new("t.toml"), &|_| None)
            .unwrap_or_else(|e| panic!("{e}"));
        let t0 = Instant::now();
        H {
            s: Supervisor::new(cfg.graph),
            t0,
            now: t0,
        }
    }
    pub fn i(&self, name: &str) -> usize {
        self.s.graph().index_of(name).unwrap()
    }
    pub fn at(&mut self, ms: u64) -> &mut Self {
        self.now = self.t0 + Duration::from_millis(ms);
        self
    }
    pub fn feed(&mut self, input: Input) -> Vec<Effect> {
        self.s.handle(input, self.now)
    }
    pub fn state(&self, name: &str) -> &'static str {
        self.s.unit(self.i(name)).state.name()
    }
    pub fn run(&self, name: &str) -> u64 {
        self.s.unit(self.i(name)).run
    }
    pub fn started(&mut self, name: &str, pid: u32) -> Vec<Effect> {
        let (comp, run) = (self.i(name), self.run(name));
        self.feed(Input::Started { comp, run, pid })
    }
    pub fn exited(&mut self, name: &str, status: ExitStatus) -> Vec<Effect> {
        let (comp, run) = (self.i(name), self.run(name));
        self.feed(Input::Exited { comp, run, status })
    }
    pub fn probe(&mut self, name: &str, role: ProbeRole, ok: bool) -> Vec<Effect> {
        let (comp, run) = (self.i(name), self.run(name));
        self.feed(Input::Probe {
            comp,
            run,
            role,
            ok,
        })
    }
    pub fn launched(&self, fx: &[Effect]) -> Vec<String> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::Launch { comp, .. } => {
                    Some(self.s.graph().components()[*comp].name.clone())
                }
                _ => None,
            })
            .collect()
    }
    pub fn signals(&self, fx: &[Effect]) -> Vec<(String, u32, i32)> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::Signal {
                    comp, pid, signal, ..
                } => Some((
                    self.s.graph().components()[*comp].name.clone(),
                    *pid,
                    *signal,
                )),
                _ => None,
            })
            .collect()
    }
    pub fn timer(fx: &[Effect]) -> Option<(usize, u64, Instant)> {
        fx.iter().find_map(|e| match e {
            Effect::SetTimer { comp, token, at } => Some((*comp, *token, *at)),
            _ => None,
        })
    }
    pub fn reason(&self, name: &str) -> String {
        match &self.s.unit(self.i(name)).state {
            State::Pending { reason } | State::Failed { reason } => reason.clone(),
            _ => String::new(),
        }
    }
}
