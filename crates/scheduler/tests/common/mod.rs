//! A simulated daemon: a manual clock that moves a tick at a time, a look at
//! every schedule per tick, and runs that last a while and watch their
//! window close.

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use nightshift_plan::{FileKind, Source};
use nightshift_scheduler::{
    CatchUp, Clock, Decision, ManualClock, Missed, Phase, Schedule as Entry, due, entries, phase,
};

/// The entries of one schedules file, checked with a one-step playbook for
/// each playbook it names.
pub fn schedules(text: &str) -> Vec<Entry> {
    let mut sources = vec![(FileKind::Schedule, Source::new("schedules/test.toml", text))];
    let mut names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("playbook = \""))
        .filter_map(|rest| rest.split('"').next())
        .collect();
    names.sort_unstable();
    names.dedup();
    for name in names {
        let playbook = format!(
            "name = \"{name}\"\ntargets = [\"localhost\"]\n[[steps]]\nname = \"s\"\ncommand = \"true\"\n"
        );
        sources.push((
            FileKind::Playbook,
            Source::new(format!("playbooks/{name}.toml"), playbook),
        ));
    }
    match nightshift_plan::from_sources(sources) {
        Ok(plan) => entries(&plan),
        Err(err) => panic!("the test schedules do not check: {err:#?}"),
    }
}

/// A local wall-clock time that exists exactly once.
pub fn local(tz: Tz, y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    tz.with_ymd_and_hms(y, mo, d, h, mi, 0)
        .single()
        .expect("an unambiguous local time")
        .to_utc()
}

/// A run the simulated daemon started.
#[derive(Debug, Clone)]
pub struct Run {
    pub fire: DateTime<Utc>,
    pub window_closes: DateTime<Utc>,
    pub started: DateTime<Utc>,
    /// Each phase the run was seen in, from the look it was first seen at.
    pub phases: Vec<(DateTime<Utc>, Phase)>,
    /// When it ended: done, or cancelled at [`Phase::Cancel`].
    pub ended: Option<DateTime<Utc>>,
}

#[derive(Debug)]
pub struct Daemon {
    pub clock: ManualClock,
    pub entries: Vec<Entry>,
    pub last_looked: DateTime<Utc>,
    pub tick: TimeDelta,
    pub late_after: TimeDelta,
    pub policy: CatchUp,
    /// How long a run takes when its window lets it finish.
    pub run_length: TimeDelta,
    pub grace: TimeDelta,
    /// Every decision, with the instant of the look that made it.
    pub log: Vec<(DateTime<Utc>, Decision)>,
    pub runs: Vec<Run>,
}

impl Daemon {
    /// A daemon that starts at `start` and ticks every 30 s, with fires
    /// late after 2 minutes and catch-up skip.
    pub fn new(entries: Vec<Entry>, start: DateTime<Utc>) -> Self {
        Self {
            clock: ManualClock::new(start),
            entries,
            last_looked: start,
            tick: TimeDelta::seconds(30),
            late_after: TimeDelta::minutes(2),
            policy: CatchUp::Skip,
            run_length: TimeDelta::minutes(5),
            grace: TimeDelta::minutes(5),
            log: Vec::new(),
            runs: Vec::new(),
        }
    }

    pub fn policy(mut self, policy: CatchUp) -> Self {
        self.policy = policy;
        self
    }

    pub fn tick(mut self, tick: TimeDelta) -> Self {
        self.tick = tick;
        self
    }

    /// Ticks until the clock reaches `until`.
    pub fn run_until(&mut self, until: DateTime<Utc>) {
        while self.clock.now() < until {
            self.clock.advance(self.tick);
            self.look();
        }
    }

    /// The daemon is not running until `until`: the clock moves, nobody looks.
    pub fn down_until(&mut self, until: DateTime<Utc>) {
        self.clock.set(until);
    }

    /// One look at every schedule and every run, as the daemon's loop does.
    pub fn look(&mut self) -> Vec<Decision> {
        let now = self.clock.now();
        let mut decided = Vec::new();
        for entry in &self.entries {
            let decisions = due(entry, self.last_looked, now, self.late_after, self.policy);
            check_look(entry, &decisions, now);
            decided.extend(decisions);
        }
        self.last_looked = now;
        self.watch_runs(now);
        for d in &decided {
            if let Decision::Start {
                fire,
                window_closes,
                ..
            } = d
            {
                self.runs.push(Run {
                    fire: *fire,
                    window_closes: *window_closes,
                    started: now,
                    phases: vec![(now, phase(*window_closes, self.grace, now))],
                    ended: None,
                });
            }
        }
        self.log.extend(decided.iter().map(|d| (now, d.clone())));
        decided
    }

    fn watch_runs(&mut self, now: DateTime<Utc>) {
        for run in self.runs.iter_mut().filter(|r| r.ended.is_none()) {
            if now >= run.started + self.run_length {
                run.ended = Some(run.started + self.run_length);
                continue;
            }
            let seen = phase(run.window_closes, self.grace, now);
            if run.phases.last().map(|(_, p)| *p) != Some(seen) {
                run.phases.push((now, seen));
            }
            if seen == Phase::Cancel {
                run.ended = Some(now);
            }
        }
    }

    /// The fires that started runs, as local times in `tz`.
    pub fn starts(&self, tz: Tz, format: &str) -> Vec<String> {
        self.log
            .iter()
            .filter_map(|(_, d)| match d {
                Decision::Start { fire, .. } => {
                    Some(fire.with_timezone(&tz).format(format).to_string())
                }
                _ => None,
            })
            .collect()
    }

    /// The fires that did not become runs, as local times in `tz`, and why.
    pub fn missed(&self, tz: Tz) -> Vec<(String, Missed)> {
        self.log
            .iter()
            .filter_map(|(_, d)| match d {
                Decision::Missed { fire, why, .. } => Some((
                    fire.with_timezone(&tz).format(WEEKDAY_TIME).to_string(),
                    *why,
                )),
                _ => None,
            })
            .collect()
    }
}

/// "Tue 11-03 01:30"
pub const WEEKDAY_TIME: &str = "%a %m-%d %H:%M";

/// What every look must hold to, whatever the scenario: at most one start
/// per schedule, for a fire that has come, inside its window, which is
/// still open.
fn check_look(entry: &Entry, decisions: &[Decision], now: DateTime<Utc>) {
    let starts: Vec<_> = decisions
        .iter()
        .filter_map(|d| match d {
            Decision::Start {
                fire,
                window_closes,
                ..
            } => Some((*fire, *window_closes)),
            _ => None,
        })
        .collect();
    assert!(starts.len() <= 1, "two starts in one look: {decisions:?}");
    for (fire, closes) in starts {
        assert!(fire <= now && now < closes, "{fire} {closes} at {now}");
        assert!(
            entry.window.is_open(&fire),
            "{fire} is outside {}",
            entry.window_name
        );
    }
    assert!(decisions.iter().all(|d| d.key() == entry.key));
}
