//! Event-time windowed aggregation into bars.
//!
//! Stream time is the largest event time the operator has seen (per task, so per input
//! partition, as in Kafka Streams). A window `[start, end)` closes once
//! `end + grace <= stream time`; a tick for a closed window is late and is reported, never
//! silently dropped. Window starts are aligned to the epoch.
//!
//! Session windows (one per key and burst of activity) grow and merge: ticks closer than `gap`
//! to a session belong to it, and a tick that bridges two sessions merges them. A session
//! `[first, last]` closes once `last + gap + grace <= stream time`, and a tick is late when it
//! is more than `grace` behind stream time. With these two rules a tick that is not late can
//! never belong to a session that has already closed, so final session bars are exactly the
//! runs of on-time ticks split wherever consecutive ticks are `gap` or more apart.

use std::collections::{BTreeMap, HashMap};

use super::accumulator::ACCUMULATOR_BYTES;
use super::{Accumulator, OpError, Output};
use crate::codec::{Bar, Reason, Tick};
use crate::config::topology::{Aggregate, Emit, WindowSpec};

/// One resolution: a window size, its advance (equal for tumbling windows) and its name; or a
/// session gap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowDef {
    /// Name used in bars and topic names (`1m`, `5m-every-1m`, `session`).
    pub name: String,
    /// Window length, microseconds (0 for sessions).
    pub size: i64,
    /// Distance between window starts, microseconds (0 for sessions).
    pub advance: i64,
    /// For session windows, the inactivity that separates sessions, microseconds.
    pub gap: Option<i64>,
}

impl WindowDef {
    /// The resolutions of a window spec.
    pub fn from_spec(spec: &WindowSpec) -> Result<Vec<Self>, OpError> {
        let micros = |d: &std::time::Duration| d.as_micros() as i64;
        let mut defs: Vec<Self> = spec
            .tumbling
            .iter()
            .map(|d| WindowDef {
                name: d.text.clone(),
                size: micros(&d.value),
                advance: micros(&d.value),
                gap: None,
            })
            .collect();
        defs.extend(spec.hopping.iter().map(|h| WindowDef {
            name: format!("{}-every-{}", h.size, h.advance),
            size: micros(&h.size.value),
            advance: micros(&h.advance.value),
            gap: None,
        }));
        defs.extend(spec.session.iter().map(|s| WindowDef {
            name: "session".into(),
            size: 0,
            advance: 0,
            gap: Some(micros(&s.gap.value)),
        }));
        Ok(defs)
    }

    /// Starts of the windows that contain `t`, latest first (none for sessions).
    pub fn starts(&self, t: i64) -> impl Iterator<Item = i64> + use<> {
        window_starts(self.size, self.advance, t)
    }
}

/// Starts of the windows of `size` every `advance` that contain `t`, latest first.
fn window_starts(size: i64, advance: i64, t: i64) -> impl Iterator<Item = i64> {
    let last = if advance > 0 {
        t.div_euclid(advance) * advance
    } else {
        i64::MIN
    };
    (0..)
        .map(move |k| last - k * advance)
        .take_while(move |s| advance > 0 && s + size > t)
}

/// Identity of an open window inside one operator: ordered by end so that closing walks the
/// front of the map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WindowId {
    /// Exclusive end, microseconds; for a session, its last tick's event time + gap.
    pub end: i64,
    /// Index of the resolution.
    pub res: u16,
    /// Interned key.
    pub key: u32,
    /// Inclusive start, microseconds.
    pub start: i64,
}

/// An open window's aggregate, when it last emitted an update, and whether it changed since
/// the last commit.
#[derive(Debug, Clone, Copy)]
struct Slot {
    acc: Accumulator,
    last_update: i64,
    dirty: bool,
}

/// What the state store keeps of an open window: its aggregate and the stream time of its last
/// update (`emit: update`), so that a restart throttles updates exactly as before.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StoredWindow {
    /// The aggregate.
    pub acc: Accumulator,
    /// Stream time of the last update emitted; `i64::MIN` if none.
    pub last_update: i64,
}

/// Bytes of [`StoredWindow::to_bytes`].
const STORED_WINDOW_BYTES: usize = ACCUMULATOR_BYTES + 8;

impl StoredWindow {
    /// The aggregate's bytes, then the last update, little-endian.
    pub fn to_bytes(&self) -> [u8; STORED_WINDOW_BYTES] {
        let mut out = [0u8; STORED_WINDOW_BYTES];
        out[..ACCUMULATOR_BYTES].copy_from_slice(&self.acc.to_bytes());
        out[ACCUMULATOR_BYTES..].copy_from_slice(&self.last_update.to_le_bytes());
        out
    }

    /// Reads [`StoredWindow::to_bytes`]; `None` if the length is wrong.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != STORED_WINDOW_BYTES {
            return None;
        }
        Some(Self {
            acc: Accumulator::from_bytes(&bytes[..ACCUMULATOR_BYTES])?,
            last_update: i64::from_le_bytes(bytes[ACCUMULATOR_BYTES..].try_into().ok()?),
        })
    }
}

/// A change to persist: `None` deletes the window.
pub type WindowChange = ((u16, String, i64), Option<StoredWindow>);

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
    /// Open sessions per (resolution, key).
    sessions: HashMap<(u16, u32), Vec<WindowId>>,
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
            sessions: HashMap::new(),
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
        if let Some(detail) = self.overflow(key_id, tick) {
            out.push(Output::Rejected {
                offset,
                reason: Reason::Overflow,
                detail,
            });
            return;
        }
        for r in 0..self.defs.len() {
            if let Some(gap) = self.defs[r].gap {
                self.ingest_session(r as u16, key_id, gap, tick, offset, now, out);
                continue;
            }
            let (size, advance) = (self.defs[r].size, self.defs[r].advance);
            let mut closed = None;
            for start in window_starts(size, advance, tick.event_time) {
                let id = WindowId {
                    end: start + size,
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
                        last_update: i64::MIN,
                        dirty: false,
                    });
                slot.dirty = true;
                self.emit_update(id, now, out);
            }
            if let Some(id) = closed {
                let def = &self.defs[r];
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

    /// Why adding `tick` would overflow a sum of one of the windows it joins (checked before
    /// any window changes, so that a tick counts in all of its windows or in none): volume
    /// and count must stay within `i64`, turnover finite. Sessions of the key are summed
    /// together, since the tick may merge them.
    fn overflow(&self, key: u32, tick: &Tick) -> Option<String> {
        let fits = |volume: i64, count: i64, turnover: f64| {
            volume.checked_add(tick.size).is_some()
                && count.checked_add(1).is_some()
                && (turnover + tick.price * tick.size as f64).is_finite()
        };
        if !fits(0, 0, 0.0) {
            return Some(format!(
                "price {} times size {} is not finite",
                tick.price, tick.size
            ));
        }
        for (r, def) in self.defs.iter().enumerate() {
            let (mut volume, mut count, mut turnover) = (0i64, 0i64, 0.0f64);
            let ids: Vec<WindowId> = match def.gap {
                Some(_) => self
                    .sessions
                    .get(&(r as u16, key))
                    .cloned()
                    .unwrap_or_default(),
                None => window_starts(def.size, def.advance, tick.event_time)
                    .map(|start| WindowId {
                        end: start + def.size,
                        res: r as u16,
                        key,
                        start,
                    })
                    .collect(),
            };
            for id in ids {
                let Some(slot) = self.windows.get(&id) else {
                    continue;
                };
                let a = &slot.acc;
                if def.gap.is_none() {
                    (volume, count, turnover) = (a.volume, a.count, a.turnover);
                } else {
                    let (Some(v), Some(c)) =
                        (volume.checked_add(a.volume), count.checked_add(a.count))
                    else {
                        return Some(format!(
                            "{} sessions of key {} would overflow",
                            def.name, self.keys[key as usize]
                        ));
                    };
                    (volume, count, turnover) = (v, c, turnover + a.turnover);
                }
                if def.gap.is_none() && !fits(volume, count, turnover) {
                    return Some(format!(
                        "{} window at {} of key {} would overflow",
                        def.name, id.start, self.keys[key as usize]
                    ));
                }
            }
            if def.gap.is_some() && !fits(volume, count, turnover) {
                return Some(format!(
                    "{} session of key {} would overflow",
                    def.name, self.keys[key as usize]
                ));
            }
        }
        None
    }

    /// With `emit: update`, emits the window's current bar if the interval has passed.
    fn emit_update(&mut self, id: WindowId, now: i64, out: &mut Vec<Output>) {
        let Some(every) = self.update_every else {
            return;
        };
        let slot = self.windows.get_mut(&id).expect("updated window is open");
        if now >= slot.last_update.saturating_add(every) {
            slot.last_update = now;
            let acc = slot.acc;
            out.push(Output::Bar(self.bar(id, &acc, false)));
        }
    }

    /// Adds a tick to its key's session at resolution `res`, merging every open session closer
    /// than `gap` to it; or reports it late when it is more than grace behind `now`.
    #[allow(clippy::too_many_arguments)]
    fn ingest_session(
        &mut self,
        res: u16,
        key: u32,
        gap: i64,
        tick: &Tick,
        offset: i64,
        now: i64,
        out: &mut Vec<Output>,
    ) {
        let t = tick.event_time;
        if t.saturating_add(self.grace) < now {
            out.push(Output::Late {
                offset,
                resolution: self.defs[res as usize].name.clone(),
                detail: format!(
                    "{} of {}: tick at {t} is more than grace ({} us) behind stream time {now}",
                    self.defs[res as usize].name, self.keys[key as usize], self.grace
                ),
            });
            return;
        }
        let mut acc = Accumulator::new(tick, offset);
        let (mut first, mut last, mut last_update) = (t, t, i64::MIN);
        let open = self.sessions.entry((res, key)).or_default();
        let mut i = 0;
        while i < open.len() {
            let id = open[i];
            let (s, e) = (id.start, id.end - gap);
            if t - e < gap && s - t < gap {
                open.swap_remove(i);
                let slot = self.windows.remove(&id).expect("indexed session is open");
                acc.merge(&slot.acc);
                (first, last) = (first.min(s), last.max(e));
                last_update = last_update.max(slot.last_update);
                self.removed.push(id);
            } else {
                i += 1;
            }
        }
        let id = WindowId {
            end: last + gap,
            res,
            key,
            start: first,
        };
        open.push(id);
        let slot = Slot {
            acc,
            last_update,
            dirty: true,
        };
        self.windows.insert(id, slot);
        self.emit_update(id, now, out);
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
            out.push(Output::Bar(self.bar(id, &acc, true)));
            self.removed.push(id);
            if let Some(open) = self.sessions.get_mut(&(id.res, id.key)) {
                open.retain(|s| *s != id);
                if open.is_empty() {
                    self.sessions.remove(&(id.res, id.key));
                }
            }
        }
    }

    /// The bar of a window: `is_final` when it closed, else an update. A session bar spans its
    /// first to its last tick's event time.
    fn bar(&self, id: WindowId, a: &Accumulator, is_final: bool) -> Bar {
        let def = &self.defs[id.res as usize];
        Bar {
            symbol: self.keys[id.key as usize].clone(),
            resolution: def.name.clone(),
            window_start: id.start,
            window_end: id.end - def.gap.unwrap_or(0),
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
            is_final,
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
            let stored = StoredWindow {
                acc: slot.acc,
                last_update: slot.last_update,
            };
            out.push((
                (id.res, self.keys[id.key as usize].clone(), id.start),
                Some(stored),
            ));
        }
        out
    }

    /// Restores stream time and open windows from the state store.
    pub fn restore(
        &mut self,
        stream_time: i64,
        windows: impl IntoIterator<Item = ((u16, String, i64), StoredWindow)>,
    ) {
        self.stream_time = stream_time;
        for ((res, key, start), stored) in windows {
            let acc = stored.acc;
            let Some(def) = self.defs.get(res as usize) else {
                continue;
            };
            let (gap, end) = match def.gap {
                Some(gap) => (Some(gap), acc.close_at.0 + gap),
                None => (None, start + def.size),
            };
            let id = WindowId {
                end,
                res,
                key: self.intern(&key),
                start,
            };
            if gap.is_some() {
                self.sessions.entry((res, id.key)).or_default().push(id);
            }
            let slot = Slot {
                acc,
                last_update: stored.last_update,
                dirty: false,
            };
            self.windows.insert(id, slot);
        }
    }
}

#[cfg(test)]
mod tests;
