//! `tickflow status`: an application seen from outside, through the broker (its consumer
//! group and its changelogs); `tickflow reset`: make it start over.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::config::topology::ProcessingGuarantee;
use crate::config::{AppConfig, KafkaConfig, TopologySpec};
use crate::kafka::{self, group};
use crate::state::changelog::{ChangelogPartition, LastCommit, RESET_WRITER, last_commit};
use crate::topology::plan::Plan;
use crate::topology::reset::{TaskReset, apply_reset, plan_reset};
use crate::topology::runtime::KafkaCluster;

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
            .filter(|next| *next >= 0)
            .or(self.committed)
    }

    fn released(&self) -> bool {
        self.last.as_ref().is_some_and(|c| c.seal.release)
    }

    fn state(&self) -> &'static str {
        let reset = self
            .last
            .as_ref()
            .is_some_and(|c| c.seal.writer == RESET_WRITER);
        match (self.members_known, &self.owner, self.released()) {
            (_, None, _) if reset => "reset",
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
    let (group, (tasks, missing)) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
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
    for topic in missing {
        println!("(topic {topic} does not exist yet)");
    }
    Ok(())
}

/// The status of every task of `plan` whose input topic exists, and the input topics that
/// do not; `members` are the group's, if the broker could describe it.
fn tasks_of(
    kafka: &KafkaConfig,
    plan: &Plan,
    members: Option<&[group::Member]>,
) -> anyhow::Result<(Vec<TaskStatus>, Vec<String>)> {
    let topics = kafka::existing_topics(kafka);
    let (mut out, mut missing) = (Vec::new(), Vec::new());
    for (topic, changelog) in plan.task_inputs() {
        let Some(&n) = topics.get(&topic) else {
            missing.push(topic);
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
    Ok((out, missing))
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

/// Flags of `tickflow reset`.
#[derive(Debug, Clone, Args)]
pub struct ResetArgs {
    /// Topology YAML file.
    #[arg(long, short = 't')]
    pub topology: PathBuf,
    /// Reset for real; without it, print what the reset would do and change nothing.
    #[arg(long)]
    pub execute: bool,
}

/// Runs `tickflow reset`: like Kafka Streams' application reset, the application starts over
/// from the beginning of its input with empty state. Every changelog partition gets a commit
/// that deletes its keys (repartition tasks resume at their topic's end), the group's offsets
/// move to the input's beginning (the repartition topic's end), and this host's state
/// directory of the application is deleted. Refused while the group has members.
pub async fn reset(args: ResetArgs, app: AppConfig) -> anyhow::Result<()> {
    let plan = Plan::of(&TopologySpec::load(&args.topology)?)?;
    let state = app.state.dir.join(&plan.application);
    let kafka = app.kafka.clone();
    tokio::task::spawn_blocking(move || reset_blocking(&plan, &kafka, &state, args.execute)).await?
}

fn reset_blocking(
    plan: &Plan,
    kafka: &KafkaConfig,
    state: &Path,
    execute: bool,
) -> anyhow::Result<()> {
    kafka::check_reachable(kafka)?;
    let topics = kafka::existing_topics(kafka);
    let Some(&partitions) = topics.get(&plan.input_topic) else {
        println!(
            "input topic {} does not exist: nothing to reset",
            plan.input_topic
        );
        return Ok(());
    };
    check_no_member(kafka, &plan.application)?;
    let cluster = KafkaCluster::idempotent(kafka, plan)?;
    let resets = plan_reset(plan, &cluster, partitions, |t| topics.contains_key(t))?;
    let offsets = reset_offsets(kafka, plan, &resets, partitions)?;
    print_reset(plan, &resets, &offsets, state);
    if !execute {
        println!("dry run: nothing changed; add --execute to reset");
        return Ok(());
    }
    apply_reset(&resets, &cluster)?;
    group::commit_offsets(kafka, &plan.application, &offsets)?;
    if state.exists() {
        std::fs::remove_dir_all(state)
            .map_err(|e| anyhow::anyhow!("deleting {}: {e}", state.display()))?;
    }
    println!(
        "reset: {} changelog partition(s) written, {} group offset(s) committed, local state deleted",
        resets.len(),
        offsets.len()
    );
    Ok(())
}

/// Refuses a reset while the application's group has members; says so when the broker
/// cannot describe the group (a running instance then stops at its next commit, finding
/// its changelog partition moved past its last seal).
fn check_no_member(kafka: &KafkaConfig, application: &str) -> anyhow::Result<()> {
    match group::describe(kafka, application) {
        Ok((_, members)) if !members.is_empty() => {
            let names: Vec<String> = members
                .iter()
                .map(|m| format!("{}@{}", m.client_id, m.host))
                .collect();
            Err(super::UsageError(format!(
                "application {application} has {} running member(s) ({}): stop every instance before a reset",
                members.len(),
                names.join(", ")
            ))
            .into())
        }
        Ok((state, _)) => {
            println!("application {application}: group {state}, no member");
            Ok(())
        }
        Err(e) => {
            println!(
                "application {application}: the broker cannot describe the group ({e}); an instance still running would stop at its next commit"
            );
            Ok(())
        }
    }
}

/// The group offsets after a reset: the source's beginning, and for a repartition task the
/// offset its reset commit resumes at (the topic's end when the reset was planned).
fn reset_offsets(
    kafka: &KafkaConfig,
    plan: &Plan,
    resets: &[TaskReset],
    partitions: i32,
) -> anyhow::Result<Vec<(String, i32, i64)>> {
    let input = &plan.input_topic;
    let parts: Vec<(String, i32)> = (0..partitions).map(|p| (input.clone(), p)).collect();
    let marks = kafka::watermarks(kafka, &parts)?;
    let mut out: Vec<(String, i32, i64)> = parts
        .into_iter()
        .zip(marks)
        .map(|((topic, p), (low, _))| (topic, p, low))
        .collect();
    let resumed = resets
        .iter()
        .filter(|r| r.input != *input && r.commit.seal.next_offset >= 0);
    out.extend(resumed.map(|r| (r.input.clone(), r.partition, r.commit.seal.next_offset)));
    Ok(out)
}

fn print_reset(plan: &Plan, resets: &[TaskReset], offsets: &[(String, i32, i64)], state: &Path) {
    for changelog in plan.changelog_topics() {
        let of: Vec<&TaskReset> = resets.iter().filter(|r| r.changelog == changelog).collect();
        let keys: usize = of.iter().map(|r| r.deleted()).sum();
        println!(
            "changelog {changelog}: {} partition(s) to reset, {keys} key(s) to delete",
            of.len()
        );
    }
    for (input, _) in plan.task_inputs() {
        let at: Vec<i64> = offsets
            .iter()
            .filter(|o| o.0 == input)
            .map(|o| o.2)
            .collect();
        if input == plan.input_topic {
            println!(
                "input {input}: every task starts over at its beginning (group offsets {at:?})"
            );
        } else {
            println!(
                "repartition {input}: tasks resume at its end, skipping what was repartitioned before (group offsets {at:?})"
            );
        }
    }
    let there = if state.exists() {
        "to delete"
    } else {
        "none on this host"
    };
    println!("local state {}: {there}", state.display());
    println!(
        "not reset: the output topics ({}); the next run writes every output again after what they hold, and a lake sink lands it again",
        plan.output_topics().join(", ")
    );
}
