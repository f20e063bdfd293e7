//! Routing one record through the plan: decoding and checking it (admit), filters, the
//! repartition hop (forward, broadcast), the window operator, and the envelopes of what it
//! emits (bars, late ticks, dead letters).
//!
//! A topology with a `group_by` runs in two stages, like a Kafka Streams sub-topology split:
//! forwarding tasks (one per source partition) filter ticks and re-key them into the internal
//! `<application>-<id>-repartition` topic, each record carrying its origin (source partition,
//! offset, and that partition's stream time); window tasks (one per repartition partition)
//! skip origins they already counted, judge lateness by the origin's stream time and close
//! windows at the slowest source partition's stream time. Bars and late ticks are therefore
//! the same however the source partitions interleave (up to the last bits of float sums),
//! and the same as without repartitioning when the key is the source key.

use std::collections::HashMap;

use super::engine::{Engine, RuntimeError, now_micros};
use super::plan::key_of;
use super::task::{Stage, Task, Work, watermark};
use crate::codec::{
    CodecError, DeadLetter, Decoder, Origin, Reason, RecordKind, RegistryClient, SourceRecord,
    Tick, WATERMARK_KEY, watermark_of, watermark_value,
};
use crate::operators::Output;

/// The record an output is about, named in late and dead-letter envelopes.
type Provenance<'a> = SourceRecord<'a>;

/// Decodes ticks, learning writer schemas from the registry on first sight. The registry's
/// "no such schema" is remembered too, so a burst of records with a bad id asks once.
pub struct TickDecoder {
    decoder: Decoder<Tick>,
    /// The registry and the runtime to ask it on; none in the test driver, whose decoder
    /// knows every schema it will see.
    registry: Option<(RegistryClient, tokio::runtime::Handle)>,
    missing: HashMap<u32, String>,
}

impl TickDecoder {
    /// A decoder that asks `registry` for unknown schema ids (on the current runtime).
    pub fn with_registry(registry: RegistryClient) -> Self {
        Self {
            decoder: Decoder::new(RecordKind::Tick),
            registry: Some((registry, tokio::runtime::Handle::current())),
            missing: HashMap::new(),
        }
    }

    /// A decoder that knows only the schemas `decoder` was taught.
    pub fn with_schemas(decoder: Decoder<Tick>) -> Self {
        Self {
            decoder,
            registry: None,
            missing: HashMap::new(),
        }
    }

    fn decode(&mut self, value: Option<&[u8]>) -> Result<Tick, CodecError> {
        let bytes = value.ok_or_else(|| CodecError::NotFramed("record has no value".into()))?;
        match self.decoder.decode(bytes) {
            Err(CodecError::UnknownSchemaId(id)) => {
                if let Some(message) = self.missing.get(&id) {
                    let message = message.clone();
                    return Err(CodecError::SchemaNotFound { id, message });
                }
                let taught = match &self.registry {
                    Some((registry, runtime)) => {
                        runtime.block_on(registry.teach(&mut self.decoder, id))
                    }
                    None => Err(CodecError::SchemaNotFound {
                        id,
                        message: "no schema registry to ask".into(),
                    }),
                };
                match taught {
                    Err(CodecError::SchemaNotFound { id, message }) => {
                        self.missing.insert(id, message.clone());
                        return Err(CodecError::SchemaNotFound { id, message });
                    }
                    taught => taught?,
                }
                self.decoder.decode(bytes)
            }
            other => other,
        }
    }
}

/// Whether a decoding error is the registry's (down, refusing), not the record's: such a
/// record is never dead-lettered; the run stops instead, and resumes from its last commit.
fn registry_failed(e: &CodecError) -> bool {
    matches!(
        e,
        CodecError::Registry { .. } | CodecError::RegistryUnavailable { .. }
    )
}

impl Engine {
    fn task_mut(&mut self, stage: Stage, partition: i32) -> &mut Task {
        self.tasks
            .get_mut(&(stage, partition))
            .expect("process checked the task exists")
    }

    /// Source record → window operator → bars and late envelopes.
    pub(super) fn window(&mut self, m: &SourceRecord<'_>) -> Result<(), RuntimeError> {
        let stage = Stage::Window {
            repartitioned: false,
        };
        let watermark = watermark_of(m.key, m.value);
        if let Some(t) = watermark
            && !self.admit_watermark(m, t)?
        {
            return Ok(());
        }
        let mut outputs = std::mem::take(&mut self.outputs);
        if let Some(t) = watermark {
            self.task_mut(stage, m.partition)
                .window_op()
                .advance_to(t, &mut outputs);
        } else if let Some(tick) = self.admit(m, stage)? {
            let key = key_of(&tick, &self.plan.source_key);
            let task = self.tasks.get_mut(&(stage, m.partition)).expect("task");
            task.window_op()
                .process(&key, &tick, m.offset, &mut outputs);
        }
        self.emit_all(m, outputs)
    }

    /// Decodes a source tick and checks it: bad data goes to the dead-letter topic with its
    /// reason, filtered ticks are counted; `None` for both.
    fn admit(&mut self, m: &SourceRecord<'_>, stage: Stage) -> Result<Option<Tick>, RuntimeError> {
        let tick = match self.ticks.decode(m.value) {
            Ok(tick) => tick,
            Err(e) if registry_failed(&e) => return Err(e.into()),
            Err(e) => {
                self.dead_letter(m, reason(&e), e.to_string())?;
                return Ok(None);
            }
        };
        let stream_time = self.task_mut(stage, m.partition).stream_time();
        if let Err(r) = self.plan.sanity.check(&tick, stream_time, m.timestamp) {
            self.dead_letter(m, r.reason, r.detail)?;
            return Ok(None);
        }
        if !self.plan.filters.iter().all(|f| f.keeps(&tick)) {
            self.stats.filtered += 1;
            self.metrics.filtered.inc();
            return Ok(None);
        }
        Ok(Some(tick))
    }

    /// Checks a watermark record at `time` like a tick's event time; one that fails goes to
    /// the dead-letter topic with its reason (false), and moves no stream time.
    fn admit_watermark(&mut self, m: &SourceRecord<'_>, time: i64) -> Result<bool, RuntimeError> {
        match self.plan.sanity.check_watermark(time, m.timestamp) {
            Ok(()) => Ok(true),
            Err(r) => self.dead_letter(m, r.reason, r.detail).map(|()| false),
        }
    }

    /// Source record → filters → re-keyed into the repartition topic with its origin.
    pub(super) fn forward(&mut self, m: &SourceRecord<'_>) -> Result<(), RuntimeError> {
        let p = m.partition;
        if let Some(t) = watermark_of(m.key, m.value) {
            if !self.admit_watermark(m, t)? {
                return Ok(());
            }
            if let Work::Forward { stream_time, .. } = &mut self.task_mut(Stage::Forward, p).work {
                *stream_time = (*stream_time).max(t);
            }
            return self.broadcast(p);
        }
        let Some(tick) = self.admit(m, Stage::Forward)? else {
            return Ok(());
        };
        let Work::Forward { stream_time, .. } = &mut self.task_mut(Stage::Forward, p).work else {
            unreachable!("forward stage");
        };
        *stream_time = (*stream_time).max(tick.event_time);
        let origin = Origin {
            partition: p,
            offset: m.offset,
            stream_time: *stream_time,
        };
        let group = self
            .plan
            .group_by
            .as_ref()
            .expect("forward stage has a group_by");
        let mut envelope = std::mem::take(&mut self.envelope);
        origin.wrap_into(m.value.unwrap_or_default(), &mut envelope);
        let (topic, key) = (
            group.topic.clone(),
            key_of(&tick, &group.field).into_owned(),
        );
        let sent = self.send_output(&topic, key.as_bytes(), &envelope);
        self.envelope = envelope;
        sent?;
        self.stats.forwarded += 1;
        self.metrics.forwarded.inc();
        Ok(())
    }

    /// Tells every repartition partition how far source partition `p` has got, if that moved
    /// since the last broadcast, so windows close even where `p` sends no ticks.
    pub(super) fn broadcast(&mut self, p: i32) -> Result<(), RuntimeError> {
        let Work::Forward {
            stream_time,
            broadcast,
        } = &mut self.task_mut(Stage::Forward, p).work
        else {
            return Ok(());
        };
        if *stream_time <= *broadcast {
            return Ok(());
        }
        *broadcast = *stream_time;
        let origin = Origin {
            partition: p,
            offset: -1,
            stream_time: *stream_time,
        };
        let group = self
            .plan
            .group_by
            .as_ref()
            .expect("forward stage has a group_by");
        origin.wrap_into(&watermark_value(origin.stream_time), &mut self.envelope);
        for q in 0..self.partitions {
            let outputs = self.cluster.outputs();
            outputs.send(&group.topic, Some(q), WATERMARK_KEY, Some(&self.envelope))?;
            self.stats.broadcasts += 1;
        }
        Ok(())
    }

    /// Repartitioned record → window operator, judged by its source partition's stream time;
    /// windows close at the slowest source partition's stream time.
    pub(super) fn window_repartitioned(
        &mut self,
        m: &SourceRecord<'_>,
    ) -> Result<(), RuntimeError> {
        let unwrapped = m
            .value
            .and_then(Origin::unwrap)
            .filter(|(o, _)| (0..self.partitions).contains(&o.partition));
        self.stats.repartition_records += 1;
        let Some((origin, value)) = unwrapped else {
            let detail = "no valid origin envelope in front of the value".to_string();
            return self.dead_letter(m, Reason::BadRepartitionRecord, detail);
        };
        let input_topic = self.input_topic.clone();
        let source = SourceRecord {
            topic: &input_topic,
            partition: origin.partition,
            offset: origin.offset,
            key: m.key,
            value: Some(value),
            timestamp: m.timestamp,
        };
        let mut outputs = std::mem::take(&mut self.outputs);
        let is_tick = watermark_of(m.key, Some(value)).is_none();
        let task = self
            .tasks
            .get_mut(&(
                Stage::Window {
                    repartitioned: true,
                },
                m.partition,
            ))
            .expect("task");
        let Work::Window {
            op,
            sources: Some(marks),
        } = &mut task.work
        else {
            unreachable!("repartitioned window stage");
        };
        let mark = &mut marks[origin.partition as usize];
        mark.stream_time = mark.stream_time.max(origin.stream_time);
        if is_tick && origin.offset <= mark.offset {
            self.stats.duplicates += 1;
        } else if is_tick {
            mark.offset = origin.offset;
            match self.ticks.decode(Some(value)) {
                Ok(tick) if self.plan.regrouped_filters.iter().all(|f| f.keeps(&tick)) => {
                    let key = key_of(&tick, self.plan.window_key());
                    let ordinal = (i64::from(origin.partition) << 40) | origin.offset;
                    op.process_from(&key, &tick, ordinal, origin.stream_time, &mut outputs);
                }
                Ok(_) => {
                    self.stats.filtered += 1;
                    self.metrics.filtered.inc();
                }
                Err(e) if registry_failed(&e) => {
                    self.outputs = outputs;
                    return Err(e.into());
                }
                Err(e) => {
                    self.outputs = outputs;
                    return self.dead_letter(&source, reason(&e), e.to_string());
                }
            }
        }
        op.advance_to(watermark(marks), &mut outputs);
        self.emit_all(&source, outputs)
    }

    /// Sends `outputs` (about record `source`) and keeps the buffer for the next record.
    fn emit_all(
        &mut self,
        source: &Provenance<'_>,
        mut outputs: Vec<Output>,
    ) -> Result<(), RuntimeError> {
        for out in outputs.drain(..) {
            self.emit(source, out)?;
        }
        self.outputs = outputs;
        Ok(())
    }

    fn emit(&mut self, source: &Provenance<'_>, out: Output) -> Result<(), RuntimeError> {
        match out {
            Output::Bar(bar) => {
                let res = self
                    .plan
                    .defs
                    .iter()
                    .position(|d| d.name == bar.resolution)
                    .unwrap_or(0);
                for topic in self.plan.bar_topics[res].clone() {
                    let bytes = self.bar_encoders[&topic].encode(&bar)?;
                    self.send_output(&topic, bar.symbol.as_bytes(), &bytes)?;
                    let labels = [topic.as_str(), bar.resolution.as_str()];
                    self.metrics.bars.with_label_values(&labels).inc();
                }
                self.stats.bars += 1;
                if source.timestamp > 0 {
                    let age = now_micros().saturating_sub(source.timestamp);
                    self.metrics
                        .bar_latency_seconds
                        .observe(age.max(0) as f64 / 1e6);
                }
            }
            Output::Rejected { reason, detail, .. } => {
                self.dead_letter(source, reason, detail)?;
            }
            Output::Late {
                detail, resolution, ..
            } => {
                self.stats.late += 1;
                self.metrics
                    .late_ticks
                    .with_label_values(&[&resolution])
                    .inc();
                let topic = self.plan.late_topic.clone();
                self.send_envelope(source, &topic, Reason::Late, detail)?;
            }
        }
        Ok(())
    }

    /// Sends a record that cannot be processed to the dead-letter topic, counted by reason.
    pub(super) fn dead_letter(
        &mut self,
        source: &Provenance<'_>,
        reason: Reason,
        detail: String,
    ) -> Result<(), RuntimeError> {
        self.stats.dead_letters += 1;
        let label = reason.as_str();
        let labels = ["engine", label];
        self.metrics.dead_letters.with_label_values(&labels).inc();
        let topic = self.plan.dlq_topic.clone();
        self.send_envelope(source, &topic, reason, detail)
    }

    fn send_envelope(
        &mut self,
        source: &Provenance<'_>,
        topic: &str,
        reason: Reason,
        detail: String,
    ) -> Result<(), RuntimeError> {
        let envelope = DeadLetter::about(source, reason, detail, &self.plan.application);
        let bytes = self.dead_letters.encode(&envelope)?;
        self.send_output(topic, source.key.unwrap_or_default(), &bytes)
    }
}

fn reason(e: &CodecError) -> Reason {
    match e {
        CodecError::SchemaNotFound { .. } => Reason::UnknownSchema,
        CodecError::Incompatible { .. } => Reason::IncompatibleSchema,
        _ => Reason::Undecodable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The metric's zero series (which `metrics` lists, knowing no codec) are the reasons'.
    #[test]
    fn every_dead_letter_reason_has_a_metric_series_from_the_start() {
        let codes = Reason::DEAD_LETTERS.map(Reason::as_str);
        assert_eq!(codes, crate::metrics::DEAD_LETTER_REASONS);
    }
}
