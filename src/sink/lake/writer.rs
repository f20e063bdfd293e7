//! The lake files of one Kafka partition of one landed topic: which file each record goes to,
//! when a file is closed, which records a restarted sink must not land again, and how far the
//! consumer position may be committed. No IO happens here.

use std::collections::{BTreeMap, BTreeSet};

use apache_avro::Codec;

use crate::config::lake::{LakeFormat, RollSpec};
use crate::lake::LakeError;
use crate::lake::file::AvroFile;
use crate::lake::layout::{FileSpot, PartitionValues, file_path};
use crate::lake::offsets::OffsetRanges;

/// One record to land.
pub struct Landing<'a> {
    /// Kafka offset.
    pub offset: i64,
    /// Registry id of the writer schema.
    pub schema_id: u32,
    /// The binary Avro datum.
    pub datum: &'a [u8],
    /// Event time, UTC microseconds.
    pub time: i64,
    /// The lake partition.
    pub partition: PartitionValues,
}

/// A file ready to be written.
pub struct ClosedFile {
    /// Object path under the lake root.
    pub path: String,
    /// Its lake partition.
    pub partition: PartitionValues,
    /// Registry id of the schema of its records.
    pub schema_id: u32,
    /// Offsets of its records.
    pub offsets: OffsetRanges,
    /// The file being built.
    pub file: AvroFile,
}

struct OpenFile {
    schema_id: u32,
    first_time: i64,
    offsets: OffsetRanges,
    file: AvroFile,
}

/// The files of one Kafka partition of one landed topic.
pub struct PartitionFiles {
    topic: String,
    table: String,
    partition: i32,
    format: LakeFormat,
    codec: Codec,
    roll: RollSpec,
    open: BTreeMap<PartitionValues, OpenFile>,
    /// Records at or after the committed position that a previous run landed already.
    landed: OffsetRanges,
    /// (first, last) offsets of the files a previous run left at or after the committed
    /// position.
    recovered: Vec<(i64, i64)>,
    /// (first, last) offsets of the files this run closed.
    written: Vec<(i64, i64)>,
    /// Lake partitions whose files from a previous run have been looked for.
    checked: BTreeSet<PartitionValues>,
    /// The consumer position committed when the partition was assigned (`i64::MIN` if none).
    pub committed: i64,
    /// Next offset to read.
    pub next_offset: Option<i64>,
    /// Records skipped because they were landed already.
    pub skipped: u64,
}

impl PartitionFiles {
    /// No open files, nothing known to be landed; `committed` is the committed position.
    /// Files are built as Avro container files with `codec` (Parquet converts them).
    pub fn new(
        topic: &str,
        (table, partition): (&str, i32),
        (format, codec): (LakeFormat, Codec),
        roll: RollSpec,
        committed: i64,
    ) -> Self {
        Self {
            topic: topic.into(),
            table: table.into(),
            partition,
            format,
            codec,
            roll,
            open: BTreeMap::new(),
            landed: OffsetRanges::default(),
            recovered: Vec::new(),
            written: Vec::new(),
            checked: BTreeSet::new(),
            committed,
            next_offset: None,
            skipped: 0,
        }
    }

    /// Files open (being filled) and the bytes they hold in memory.
    pub fn buffered(&self) -> (usize, usize) {
        let bytes = self.open.values().map(|f| f.file.buffered_bytes()).sum();
        (self.open.len(), bytes)
    }

    /// Whether the files a previous run left in lake partition `values` are still to be
    /// looked for (true once per lake partition).
    pub fn needs_check(&mut self, values: &PartitionValues) -> bool {
        !self.checked.contains(values) && self.checked.insert(values.clone())
    }

    /// Records that the offsets of a file a previous run wrote are landed (found at a
    /// restart).
    pub fn mark_landed(&mut self, offsets: &OffsetRanges) {
        if let (Some(first), Some(last)) = (offsets.first(), offsets.last()) {
            self.recovered.push((first, last));
        }
        self.landed.merge(offsets);
    }

    /// The position that may be committed once every open file is written: the next offset
    /// to read, but never inside a file, of a previous run or of this one: a restart looks
    /// for files only from the committed position on, so a file that starts below it and
    /// holds records at or after it would be missed and its records landed again. Lowering
    /// the position below one file can put it inside another (their lake partitions
    /// interleave in offset order), so this repeats until no file straddles it.
    ///
    /// With no file open, files that end below the position are forgotten: every later
    /// file starts at or above it, so they can never straddle a later position.
    pub fn commit_position(&mut self) -> Option<i64> {
        let position = self.straddle_free(self.next_offset?);
        if self.open.is_empty() {
            self.recovered.retain(|(_, last)| *last >= position);
            self.written.retain(|(_, last)| *last >= position);
        }
        Some(position)
    }

    fn straddle_free(&self, mut position: i64) -> i64 {
        loop {
            let lower = self
                .recovered
                .iter()
                .chain(&self.written)
                .filter(|(first, last)| *first < position && *last >= position)
                .map(|(first, _)| *first)
                .min();
            match lower {
                Some(first) => position = first,
                None => return position,
            }
        }
    }

    /// Adds a record; returns the files this closed (at most one: the record's partition's
    /// previous file, when the record would break a roll limit or has another schema).
    pub fn add(&mut self, rec: Landing<'_>) -> Result<Option<ClosedFile>, LakeError> {
        self.next_offset = Some(rec.offset + 1);
        if self.landed.contains(rec.offset) {
            self.skipped += 1;
            return Ok(None);
        }
        let closed = match self.open.get(&rec.partition) {
            Some(f) if self.must_roll(f, &rec) => self.close(&rec.partition.clone()),
            _ => None,
        };
        let (topic, p, codec) = (&self.topic, self.partition, self.codec);
        let (table, format) = (&self.table, self.format);
        let open = self.open.entry(rec.partition).or_insert_with_key(|values| {
            let spot = FileSpot {
                table,
                values,
                format,
            };
            let name = file_path(&spot, topic, p, rec.offset);
            OpenFile {
                schema_id: rec.schema_id,
                first_time: rec.time,
                offsets: OffsetRanges::default(),
                file: AvroFile::new(codec, marker(&name)),
            }
        });
        open.file.append(rec.datum)?;
        open.offsets.push(rec.offset);
        Ok(closed)
    }

    fn must_roll(&self, f: &OpenFile, rec: &Landing<'_>) -> bool {
        let span = self.roll.max_event_time_span.value.as_micros() as i64;
        f.schema_id != rec.schema_id
            || f.file.records >= self.roll.max_records
            || f.file.raw_bytes + rec.datum.len() as u64 > self.roll.max_bytes
            || (rec.time - f.first_time).abs() >= span
    }

    fn close(&mut self, values: &PartitionValues) -> Option<ClosedFile> {
        let f = self.open.remove(values)?;
        let first = f.offsets.first()?;
        self.written.push((first, f.offsets.last()?));
        let spot = FileSpot {
            table: &self.table,
            values,
            format: self.format,
        };
        Some(ClosedFile {
            path: file_path(&spot, &self.topic, self.partition, first),
            partition: values.clone(),
            schema_id: f.schema_id,
            offsets: f.offsets,
            file: f.file,
        })
    }

    /// Closes every open file.
    pub fn close_all(&mut self) -> Vec<ClosedFile> {
        let keys: Vec<PartitionValues> = self.open.keys().cloned().collect();
        keys.iter().filter_map(|k| self.close(k)).collect()
    }

    /// Records in open files.
    pub fn open_records(&self) -> u64 {
        self.open.values().map(|f| f.file.records).sum()
    }
}

/// A sync marker derived from the file's path: the same records make the same bytes.
fn marker(path: &str) -> [u8; 16] {
    use std::hash::{Hash, Hasher};
    let mut out = [0u8; 16];
    for (i, half) in out.chunks_mut(8).enumerate() {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (i, path).hash(&mut h);
        half.copy_from_slice(&h.finish().to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::topology::DurationLit;

    fn hour(h: u32) -> PartitionValues {
        vec![
            ("dt".into(), "2026-03-02".into()),
            ("hour".into(), format!("{h:02}")),
        ]
    }

    fn files(max_records: u64) -> PartitionFiles {
        let roll = RollSpec {
            max_records,
            ..RollSpec::default()
        };
        let format = (LakeFormat::Avro, Codec::Null);
        PartitionFiles::new("ticks.raw", ("ticks", 3), format, roll, i64::MIN)
    }

    fn add(f: &mut PartitionFiles, offset: i64, h: u32) -> Option<ClosedFile> {
        let rec = Landing {
            offset,
            schema_id: 1,
            datum: b"\x02a",
            time: h as i64 * 3_600_000_000,
            partition: hour(h),
        };
        f.add(rec).unwrap()
    }

    #[test]
    fn files_roll_by_count_and_keep_late_records_apart() {
        let mut f = files(3);
        assert!(add(&mut f, 10, 9).is_none());
        assert!(add(&mut f, 11, 8).is_none()); // late: another partition
        assert!(add(&mut f, 12, 9).is_none());
        assert!(add(&mut f, 13, 9).is_none());
        let closed = add(&mut f, 14, 9).expect("the 9h file is full");
        assert_eq!(closed.offsets.to_string(), "10-10,12-13");
        assert!(closed.path.ends_with("+0000000010.avro"));
        let rest: Vec<String> = f
            .close_all()
            .iter()
            .map(|c| c.offsets.to_string())
            .collect();
        assert_eq!(rest, ["11-11", "14-14"]);
        assert_eq!(f.next_offset, Some(15));
    }

    #[test]
    fn landed_records_are_skipped() {
        let mut f = files(100);
        f.mark_landed(&OffsetRanges::parse("10-12").unwrap());
        for o in 10..15 {
            add(&mut f, o, 9);
        }
        assert_eq!(f.skipped, 3);
        let closed = f.close_all();
        assert_eq!(closed[0].offsets.to_string(), "13-14");
        assert!(closed[0].path.ends_with("+0000000013.avro"));
    }

    #[test]
    fn commits_stay_below_files_found_from_a_previous_run() {
        let mut f = files(100);
        f.mark_landed(&OffsetRanges::parse("10-20,25-25").unwrap());
        add(&mut f, 10, 9);
        assert_eq!(
            f.commit_position(),
            Some(10),
            "the found file still holds 11..25"
        );
        for o in 11..26 {
            add(&mut f, o, 9);
        }
        assert_eq!(f.commit_position(), Some(26), "past the found file");
        assert_eq!(f.skipped, 12);
    }

    /// Found by the crash test at 1,000,000 ticks: a previous run's file lowered the commit
    /// into a file this run wrote in another hour, and the next restart landed that file's
    /// later records again.
    #[test]
    fn commits_never_fall_inside_a_file_of_this_run() {
        let mut f = files(100);
        // A previous run's file in hour 10 holds 50 and 200, so the commit stays at 50 ...
        f.mark_landed(&OffsetRanges::parse("50-50,200-200").unwrap());
        // ... but this run wrote an hour-9 file holding 40..60 (but 50), across 50.
        for o in 40..=60 {
            add(&mut f, o, 9);
        }
        let closed = f.close_all();
        assert_eq!(closed.len(), 1);
        add(&mut f, 100, 11);
        assert_eq!(
            f.commit_position(),
            Some(40),
            "not 50, inside the hour-9 file"
        );
        // Past the previous run's file, with every file closed, the position passes them
        // all and they are forgotten.
        for o in 101..=200 {
            add(&mut f, o, 11);
        }
        assert_eq!(f.close_all().len(), 1);
        assert_eq!(f.commit_position(), Some(201));
        assert!(f.recovered.is_empty() && f.written.is_empty());
    }

    #[test]
    fn event_time_span_rolls() {
        let mut f = files(100);
        f.roll.max_event_time_span = DurationLit {
            text: "1s".into(),
            value: std::time::Duration::from_secs(1),
        };
        let mut rec = |offset, time| {
            f.add(Landing {
                offset,
                schema_id: 1,
                datum: b"\x02a",
                time,
                partition: hour(9),
            })
            .unwrap()
        };
        assert!(rec(0, 0).is_none());
        assert!(rec(1, 999_999).is_none());
        assert!(rec(2, 1_000_000).is_some());
    }
}
