//! The run as it happens: drawn live on a terminal, one plain line per event
//! when piped, one JSON object per event with `--json`.

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use nightshift_catalog::JobStatus;
use nightshift_engine::event::{Event, JobReport};
use nightshift_engine::line::{log_line, plain_line, where_listed};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Duration;

/// Draws events as they come; returns the finished jobs, in order.
pub(super) async fn render(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Event>,
    json: bool,
) -> Vec<JobReport> {
    let live = !json && std::io::stderr().is_terminal();
    let mut view = live.then(LiveView::default);
    let mut jobs = Vec::new();
    let mut lists = None;
    while let Some(event) = rx.recv().await {
        if let Event::RunStarted { run, .. } = &event {
            lists = Some(where_listed(*run));
        }
        if json {
            if let Ok(line) = serde_json::to_string(&event) {
                println!("{line}");
            }
        } else if let Some(view) = &mut view {
            view.show(&event);
        } else if let Some(line) = plain_line(&event, lists.as_deref()) {
            eprintln!("{line}");
        }
        if let Event::HostFinished(job) = event {
            jobs.push(job);
        }
    }
    if let Some(view) = view {
        view.finish();
    }
    jobs
}

/// The live view: the run's bar and one line per host in flight.
#[derive(Default)]
struct LiveView {
    bars: MultiProgress,
    run: Option<ProgressBar>,
    hosts: HashMap<String, ProgressBar>,
}

impl LiveView {
    fn show(&mut self, event: &Event) {
        match event {
            Event::RunStarted { hosts, .. } => {
                let _ = self.bars.println(log_line(event).unwrap_or_default());
                let bar = self.bars.add(ProgressBar::new(*hosts as u64));
                bar.set_style(
                    ProgressStyle::with_template(
                        "{msg} ▕{bar:20}▏ {pos}/{len} hosts  {elapsed_precise} elapsed",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("██░"),
                );
                bar.enable_steady_tick(Duration::from_millis(200));
                self.run = Some(bar);
            }
            Event::BatchStarted { batch, of, .. } => {
                if let Some(bar) = &self.run {
                    bar.set_message(format!("batch {batch}/{of}"));
                }
            }
            Event::StepStarted { host, step, .. } => {
                let bar = self.host_bar(host);
                bar.set_prefix(step.clone());
                bar.set_message("");
                bar.reset_elapsed();
            }
            Event::Progress { host, text, .. } => self.host_bar(host).set_message(text.clone()),
            Event::StepFinished { .. } => {}
            Event::HostFinished(job) => {
                if let Some(bar) = self.hosts.remove(&job.host) {
                    bar.finish_and_clear();
                    self.bars.remove(&bar);
                }
                if job.status != JobStatus::Ok {
                    let _ = self.bars.println(format!(
                        "  {}  ✗ {}",
                        job.host,
                        job.error.as_deref().unwrap_or(job.status.as_str())
                    ));
                }
                if let Some(bar) = &self.run {
                    bar.inc(1);
                }
            }
            Event::Halted { .. } => {
                let _ = self.bars.println(log_line(event).unwrap_or_default());
            }
            Event::RunFinished(_) => {}
        }
    }

    fn host_bar(&mut self, host: &str) -> ProgressBar {
        self.hosts
            .entry(host.to_string())
            .or_insert_with(|| {
                let bar = self.bars.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template(&format!(
                        "  {host:<12} {{prefix:<20}} {{wide_msg}} {{elapsed}}"
                    ))
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.enable_steady_tick(Duration::from_millis(200));
                bar
            })
            .clone()
    }

    fn finish(self) {
        for bar in self.hosts.values() {
            bar.finish_and_clear();
        }
        if let Some(bar) = &self.run {
            bar.finish_and_clear();
        }
    }
}
