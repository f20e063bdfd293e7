//! `tickflow status`: an application seen from outside, through the broker (its consumer
//! group and its changelogs).

use std::path::PathBuf;

use clap::Args;

use crate::config::topology::ProcessingGuarantee;
use crate::config::{AppConfig, KafkaConfig, TopologySpec};
use crate::kafka::{self, group};
use crate::state::changelog::{ChangelogPartition, LastCommit, last_commit};
use crate::topology::plan::Plan;

/// Flags of `tickflow status`.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Topology YAML file.
    #[arg(long, short = 't')]
    pub topology: PathBuf,
}

/// One task as the broker sees it.
struct TaskStatus {
    topic: String,
    partition: i32,
    /// Whether the broker described the group (so `owner` is known).
    members_known: bool,
    owner: Option<String>,
    committed: Option<i64>,
    end: i64,
    last: Option<LastCommit>,
}

impl TaskStatus {
    /// Where the task resumes: its last sealed commit (the source of truth), else the
    /// group's committed offset.
    fn position(&self) -> Option<i64> {
        self.last
            .as_ref()
            .map(|c| c.seal.next_offset)
            .or(self.committed)
    }

    fn released(&self) -> bool {
        self.last.as_ref().is_some_and(|c| c.seal.release)
    }

    fn state(&self) -> &'static str {
        match (self.members_known, &self.owner, self.released()) {
            (false, _, true) => "released",
            (false, _, false) => "unreleased",
            (true, None, _) => "unassigned",
            (true, Some(_), true) => "starting",
            (true, Some(_), false) => "running",
        }
    }

    fn owner(&self) -> String {
        match (&self.owner, self.members_known) {
            (Some(o), _) => o.clone(),
            (None, true) => "-".into(),
            (None, false) => "?".into(),
        }
    }
}

/// Runs `tickflow status`: per task (input partition) the owner, the group's committed
/// offset, the task's own position, the lag, its stream time and event-time lag.
pub async fn status(args: StatusArgs, app: AppConfig) -> anyhow::Result<()> {
    let plan = Plan::of(&TopologySpec::load(&args.topology)?)?;
    let kafka = app.kafka.clone();
    let application = plan.application.clone();
    let (group, tasks) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        kafka::check_reachable(&kafka)?;
        let described = group::describe(&kafka, &plan.application);
        let tasks = tasks_of(&kafka, &plan, described.as_ref().ok().map(|(_, m)| &m[..]))?;
        let group = match described {
            Ok((state, members)) => format!("group {state}, {} member(s)", members.len()),
            Err(e) => format!("the broker cannot describe the group ({e})"),
        };
        Ok((group, tasks))
    })
    .await??;
    println!("application {application}: {group}");
    print_tasks(&tasks, chrono::Utc::now().timestamp_micros());
    Ok(())
}

/// The status of every task of `plan` whose input topic exists; `members` are the group's,
/// if the broker could describe it.
fn tasks_of(
    kafka: &KafkaConfig,
    plan: &Plan,
    members: Option<&[group::Member]>,
) -> anyhow::Result<Vec<TaskStatus>> {
    let topics = kafka::existing_topics(kafka);
    let mut out = Vec::new();
    for (topic, changelog) in plan.task_inputs() {
        let Some(&n) = topics.get(&topic) else {
            println!("(topic {topic} does not exist yet)");
            continue;
        };
        let parts: Vec<(String, i32)> = (0..n).map(|p| (topic.clone(), p)).collect();
        let ends = kafka::high_watermarks(kafka, &parts)?;
        let committed = group::committed(kafka, &plan.application, &parts)?;
        for (((_, p), end), committed) in ends.into_iter().zip(committed) {
            let owner = members
                .into_iter()
                .flatten()
                .find(|m| m.partitions.contains(&(topic.clone(), p)))
                .map(|m| format!("{}@{}", m.client_id, m.host));
            let transactional = plan.guarantee == ProcessingGuarantee::ExactlyOnceV2;
            let log = ChangelogPartition::new(kafka, &changelog, p, transactional);
            let last = match topics.contains_key(&changelog) {
                true => last_commit(&log)?,
                false => None,
            };
            out.push(TaskStatus {
                topic: topic.clone(),
                partition: p,
                members_known: members.is_some(),
                owner,
                committed,
                end,
                last,
            });
        }
    }
    Ok(out)
}

fn print_tasks(tasks: &[TaskStatus], now: i64) {
    let dash = || "-".to_string();
    let header = [
        "topic",
        "part",
        "owner",
        "state",
        "committed",
        "position",
        "end",
        "lag",
        "stream time",
        "event-time lag",
    ];
    let rows: Vec<[String; 10]> = tasks
        .iter()
        .map(|t| {
            let time = t.last.as_ref().and_then(|c| c.stream_time);
            [
                t.topic.clone(),
                t.partition.to_string(),
                t.owner(),
                t.state().to_string(),
                t.committed.map_or_else(dash, |o| o.to_string()),
                t.position().map_or_else(dash, |o| o.to_string()),
                t.end.to_string(),
                (t.end - t.position().unwrap_or(0)).max(0).to_string(),
                time.map_or_else(dash, super::fmt_micros),
                time.map_or_else(dash, |t| format!("{:.1}s", (now - t) as f64 / 1e6)),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(&header.map(str::to_string)[..]);
    for r in &rows {
        line(&r[..]);
    }
}
