//! Event-time windowed aggregation into bars.
//!
//! Stream time is the largest event time the operator has seen (per task, so per input
//! partition, as in Kafka Streams). A window `[start, end)` closes once
//! `end + grace <= stream time`; a tick for a closed window is late and is reported, never
//! silently dropped. Window starts are aligned to the epoch.

use std::collections::{BTreeMap, HashMap};

use super::{Accumulator, OpError, Output};
use crate::codec::{Bar, Tick};
use crate::config::topology::{Aggregate, Emit, WindowSpec};

/// One resolution: a window size, its advance (equal for tumbling windows) and its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowDef {
    /// Name used in bars and topic names (`1m`, `5m-every-1m`).
    pub name: String,
    /// Window length, microseconds.
    pub size: i64,
    /// Distance between window starts, microseconds.
    pub advance: i64,
}

impl WindowDef {
    /// The resolutions of a window spec. Session windows are not supported yet.
    pub fn from_spec(spec: &WindowSpec) -> Result<Vec<Self>, OpError> {
        if spec.session.is_some() {
            return Err(OpError::Unsupported {
                id: spec.id.clone(),
                what: "session windows".into(),
            });
        }
        let micros = |d: &std::time::Duration| d.as_micros() as i64;
        let mut defs: Vec<Self> = spec
            .tumbling
            .iter()
            .map(|d| WindowDef {
                name: d.text.clone(),
                size: micros(&d.value),
                advance: micros(&d.value),
            })
            .collect();
        defs.extend(spec.hopping.iter().map(|h| WindowDef {
            name: format!("{}-every-{}", h.size, h.advance),
            size: micros(&h.size.value),
            advance: micros(&h.advance.value),
        }));
        Ok(defs)
    }

    /// Starts of the windows that contain `t`, latest first.
    pub fn starts(&self, t: i64) -> impl Iterator<Item = i64> + '_ {
        let last = t.div_euclid(self.advance) * self.advance;
        (0..)
            .map(move |k| last - k * self.advance)
            .take_while(move |s| s + self.size > t)
    }
}

/// Identity of an open window inside one operator: ordered by end so that closing walks the
/// front of the map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WindowId {
    /// Exclusive end, microseconds.
    pub end: i64,
    /// Index of the resolution.
    pub res: u16,
    /// Interned key.
    pub key: u32,
    /// Inclusive start, microseconds.
    pub start: i64,
}

/// An open window's aggregate, and whether it changed since the last commit.
#[derive(Debug, Clone, Copy)]
struct Slot {
    acc: Accumulator,
    dirty: bool,
}

/// A change to persist: `None` deletes the window.
pub type WindowChange = ((u16, String, i64), Option<Accumulator>);

/// The windowed aggregation of one task.
pub struct WindowOperator {
    defs: Vec<WindowDef>,
    extras: Vec<Aggregate>,
    grace: i64,
    update_every: Option<i64>,
    stream_time: i64,
    windows: BTreeMap<WindowId, Slot>,
    keys: Vec<String>,
    key_ids: HashMap<String, u32>,
    removed: Vec<WindowId>,
    last_update: HashMap<WindowId, i64>,
}

impl WindowOperator {
    /// An operator with no state, from a validated spec.
    pub fn new(spec: &WindowSpec) -> Result<Self, OpError> {
        Ok(Self {
            defs: WindowDef::from_spec(spec)?,
            extras: spec
                .aggregates
                .iter()
                .filter(|a| a.extra_name().is_some())
                .cloned()
                .collect(),
            grace: spec.grace.value.as_micros() as i64,
            update_every: match &spec.emit {
                Emit::Final => None,
                Emit::Update(d) => Some(d.value.as_micros() as i64),
            },
            stream_time: i64::MIN,
            windows: BTreeMap::new(),
            keys: Vec::new(),
            key_ids: HashMap::new(),
            removed: Vec::new(),
            last_update: HashMap::new(),
        })
    }

    /// The resolutions, in spec order.
    pub fn defs(&self) -> &[WindowDef] {
        &self.defs
    }

    /// Largest event time seen (or restored); `i64::MIN` before the first tick.
    pub fn stream_time(&self) -> i64 {
        self.stream_time
    }

    /// Windows currently open.
    pub fn open_windows(&self) -> usize {
        self.windows.len()
    }

    fn intern(&mut self, key: &str) -> u32 {
        if let Some(id) = self.key_ids.get(key) {
            return *id;
        }
        let id = self.keys.len() as u32;
        self.keys.push(key.to_string());
        self.key_ids.insert(key.to_string(), id);
        id
    }

    /// Aggregates one tick read at `offset` under `key`, then closes what stream time allows.
    pub fn process(&mut self, key: &str, tick: &Tick, offset: i64, out: &mut Vec<Output>) {
        self.stream_time = self.stream_time.max(tick.event_time);
        self.ingest(key, tick, offset, self.stream_time, out);
        self.close(out);
    }

    /// Aggregates one tick of a repartitioned stream. It is late at a resolution when its
    /// window had closed by `source_time`, the stream time of the partition it was first read
    /// from, so lateness does not depend on how source partitions interleave. `ordinal` breaks
    /// OHLC ties between equal event times. Stream time (the watermark closing windows) moves
    /// only through [`WindowOperator::advance_to`]: a window is open here as long as the
    /// slowest source partition has not passed its end + grace, so a tick judged on time by
    /// its own source partition always finds its window open.
    pub fn process_from(
        &mut self,
        key: &str,
        tick: &Tick,
        ordinal: i64,
        source_time: i64,
        out: &mut Vec<Output>,
    ) {
        self.ingest(key, tick, ordinal, source_time, out);
    }

    fn ingest(&mut self, key: &str, tick: &Tick, offset: i64, now: i64, out: &mut Vec<Output>) {
        let key_id = self.intern(key);
        for (r, def) in self.defs.iter().enumerate() {
            let mut closed = None;
            for start in def.starts(tick.event_time) {
                let id = WindowId {
                    end: start + def.size,
                    res: r as u16,
                    key: key_id,
                    start,
                };
                if id.end.saturating_add(self.grace) <= now {
                    closed.get_or_insert(id);
                    continue;
                }
                let slot = self
                    .windows
                    .entry(id)
                    .and_modify(|s| s.acc.add(tick, offset))
                    .or_insert_with(|| Slot {
                        acc: Accumulator::new(tick, offset),
                        dirty: false,
                    });
                slot.dirty = true;
                if let Some(every) = self.update_every {
                    let last = self.last_update.get(&id).copied().unwrap_or(i64::MIN);
                    if now >= last.saturating_add(every) {
                        self.last_update.insert(id, now);
                        out.push(Output::Bar(self.bar(id, &self.windows[&id].acc)));
                    }
                }
            }
            if let Some(id) = closed {
                out.push(Output::Late {
                    offset,
                    resolution: def.name.clone(),
                    detail: format!(
                        "{} window [{}, {}) of {key} closed at stream time {now} (grace {} us)",
                        def.name, id.start, id.end, self.grace
                    ),
                });
            }
        }
    }

    /// Moves stream time to at least `t` (a watermark) and closes what that allows.
    pub fn advance_to(&mut self, t: i64, out: &mut Vec<Output>) {
        self.stream_time = self.stream_time.max(t);
        self.close(out);
    }

    /// Emits and forgets every window whose end + grace has passed, in (end, resolution, key)
    /// order so that the output sequence does not depend on how keys were interned.
    fn close(&mut self, out: &mut Vec<Output>) {
        let mut closing = Vec::new();
        while let Some((id, _)) = self.windows.first_key_value() {
            if id.end.saturating_add(self.grace) > self.stream_time {
                break;
            }
            let (id, slot) = self.windows.pop_first().expect("non-empty");
            closing.push((id, slot.acc));
        }
        closing.sort_by(|(a, _), (b, _)| {
            (a.end, a.res, &self.keys[a.key as usize], a.start).cmp(&(
                b.end,
                b.res,
                &self.keys[b.key as usize],
                b.start,
            ))
        });
        for (id, acc) in closing {
            out.push(Output::Bar(self.bar(id, &acc)));
            self.last_update.remove(&id);
            self.removed.push(id);
        }
    }

    fn bar(&self, id: WindowId, a: &Accumulator) -> Bar {
        Bar {
            symbol: self.keys[id.key as usize].clone(),
            resolution: self.defs[id.res as usize].name.clone(),
            window_start: id.start,
            window_end: id.end,
            open: a.open,
            high: a.high,
            low: a.low,
            close: a.close,
            volume: a.volume,
            vwap: a.vwap(),
            turnover: a.turnover,
            trade_count: a.count,
            first_tick_time: a.open_at.0,
            last_tick_time: a.close_at.0,
            extras: self
                .extras
                .iter()
                .filter_map(|x| Some((x.extra_name()?, a.field_aggregate(x)?)))
                .collect(),
        }
    }

    /// Windows changed or removed since the last call, for the state store. Walks the open
    /// windows once per commit instead of tracking changes per tick.
    pub fn take_changes(&mut self) -> Vec<WindowChange> {
        let mut out: Vec<WindowChange> = Vec::with_capacity(self.removed.len());
        for id in self.removed.drain(..) {
            out.push(((id.res, self.keys[id.key as usize].clone(), id.start), None));
        }
        for (id, slot) in self.windows.iter_mut().filter(|(_, s)| s.dirty) {
            slot.dirty = false;
            out.push((
                (id.res, self.keys[id.key as usize].clone(), id.start),
                Some(slot.acc),
            ));
        }
        out
    }

    /// Restores stream time and open windows from the state store.
    pub fn restore(
        &mut self,
        stream_time: i64,
        windows: impl IntoIterator<Item = ((u16, String, i64), Accumulator)>,
    ) {
        self.stream_time = stream_time;
        for ((res, key, start), acc) in windows {
            let Some(def) = self.defs.get(res as usize) else {
                continue;
            };
            let id = WindowId {
                end: start + def.size,
                res,
                key: self.intern(&key),
                start,
            };
            self.windows.insert(id, Slot { acc, dirty: false });
        }
    }
}

#[cfg(test)]
mod tests;
