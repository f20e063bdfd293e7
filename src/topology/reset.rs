//! Resetting an application (`tickflow reset`), like Kafka Streams' application reset tool:
//! after it, the application starts over from the beginning of its input with empty state.
//!
//! Kafka Streams deletes the internal topics. tickflow appends instead, to every changelog
//! partition, a commit that deletes every key it holds ([`reset_commit`]), and tells tasks
//! that read a repartition topic to resume at its end (what was repartitioned before the
//! reset is skipped; the forwarding tasks repartition the input again from its beginning).
//! This works on brokers that do not delete topics, keeps the topics' configuration, and
//! reaches every host: a local store behind the reset finds another writer's commit and is
//! rebuilt from the changelog, which now holds nothing. Output topics are not touched: the
//! run after a reset writes its bars again.

use super::edge::Cluster;
use super::engine::RuntimeError;
use super::plan::Plan;
use crate::config::topology::ProcessingGuarantee;
use crate::state::changelog::{ResetCommit, SEALED_KEY, reset_commit};

/// The reset of one task: the commit to append to its changelog partition.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskReset {
    /// The task's input topic (the source, or a repartition topic).
    pub input: String,
    /// The changelog topic.
    pub changelog: String,
    /// The task's partition.
    pub partition: i32,
    /// The partition's end when the reset was planned.
    pub end: i64,
    /// What to append.
    pub commit: ResetCommit,
}

impl TaskReset {
    /// Keys the reset deletes (its entries other than the resume offset).
    pub fn deleted(&self) -> usize {
        self.commit
            .entries
            .iter()
            .filter(|(_, v)| v.is_none())
            .count()
    }
}

/// Plans the reset of every task of `plan` (input partitioned `partitions` ways) whose
/// changelog `exists`. A source task whose changelog partition is empty never ran and is
/// left alone; a repartition task always resumes at its topic's end.
pub fn plan_reset(
    plan: &Plan,
    cluster: &dyn Cluster,
    partitions: i32,
    exists: impl Fn(&str) -> bool,
) -> Result<Vec<TaskReset>, RuntimeError> {
    let transactional = plan.guarantee == ProcessingGuarantee::ExactlyOnceV2;
    let repartition = plan.group_by.as_ref().map(|g| g.topic.as_str());
    let mut out = Vec::new();
    for (input, changelog) in plan.task_inputs() {
        if !exists(&changelog) {
            continue;
        }
        let parts: Vec<(String, i32)> = (0..partitions).map(|p| (input.clone(), p)).collect();
        let skips = Some(input.as_str()) == repartition && exists(&input);
        let resume: Vec<Option<i64>> = match skips {
            true => cluster
                .ends(&parts)?
                .into_iter()
                .map(|(_, e)| Some(e))
                .collect(),
            false => vec![None; parts.len()],
        };
        for ((_, p), resume) in parts.into_iter().zip(resume) {
            let log = cluster.changelog(&changelog, p);
            let end = log.end()?;
            if end == 0 && resume.is_none() {
                continue;
            }
            out.push(TaskReset {
                input: input.clone(),
                changelog: changelog.clone(),
                partition: p,
                end,
                commit: reset_commit(&*log, resume, transactional)?,
            });
        }
    }
    Ok(out)
}

/// Appends each task's reset commit and checks that each seal landed where it was planned:
/// one that did not means an instance of the application wrote meanwhile.
pub fn apply_reset(resets: &[TaskReset], cluster: &dyn Cluster) -> Result<(), RuntimeError> {
    let producer = cluster.changelogs();
    for r in resets {
        for (key, value) in &r.commit.entries {
            producer.send(&r.changelog, Some(r.partition), key, value.as_deref())?;
        }
        let seal = r.commit.seal.encode();
        producer.send(&r.changelog, Some(r.partition), SEALED_KEY, Some(&seal))?;
    }
    producer.flush()?;
    for r in resets {
        let Some(expected) = r.commit.seal.at else {
            continue;
        };
        let found = producer.last_offset(&r.changelog, r.partition);
        if found != Some(expected) {
            return Err(RuntimeError::ResetRaced {
                topic: r.changelog.clone(),
                partition: r.partition,
                expected,
                found: found.unwrap_or(-1),
            });
        }
    }
    Ok(())
}
