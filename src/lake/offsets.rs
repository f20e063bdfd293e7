//! Sets of Kafka offsets kept as sorted, disjoint, inclusive ranges: which records of one
//! Kafka partition a lake file holds (written into the file's metadata), and which records
//! a restarted sink finds already landed.

use std::fmt;

/// Offsets as sorted, disjoint, inclusive ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OffsetRanges(Vec<(i64, i64)>);

impl OffsetRanges {
    /// Adds `offset`, which must be above every offset already in the set (records of one
    /// partition arrive in offset order).
    pub fn push(&mut self, offset: i64) {
        match self.0.last_mut() {
            Some((_, end)) if *end + 1 == offset => *end = offset,
            Some((_, end)) if *end >= offset => {}
            _ => self.0.push((offset, offset)),
        }
    }

    /// Adds every offset of `other`, in any order.
    pub fn merge(&mut self, other: &OffsetRanges) {
        self.0.extend_from_slice(&other.0);
        self.0.sort_unstable();
        let mut merged: Vec<(i64, i64)> = Vec::with_capacity(self.0.len());
        for (a, b) in self.0.drain(..) {
            match merged.last_mut() {
                Some((_, end)) if a <= *end + 1 => *end = (*end).max(b),
                _ => merged.push((a, b)),
            }
        }
        self.0 = merged;
    }

    /// Whether `offset` is in the set.
    pub fn contains(&self, offset: i64) -> bool {
        let i = self.0.partition_point(|(_, end)| *end < offset);
        self.0.get(i).is_some_and(|(start, _)| *start <= offset)
    }

    /// Number of offsets in the set.
    pub fn count(&self) -> u64 {
        self.0.iter().map(|(a, b)| (b - a + 1) as u64).sum()
    }

    /// Lowest offset, if any.
    pub fn first(&self) -> Option<i64> {
        self.0.first().map(|(a, _)| *a)
    }

    /// Highest offset, if any.
    pub fn last(&self) -> Option<i64> {
        self.0.last().map(|(_, b)| *b)
    }

    /// Every offset in the set, in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = i64> + '_ {
        self.0.iter().flat_map(|(a, b)| *a..=*b)
    }

    /// Reads the text form `a-b,c-d` written by `Display`.
    pub fn parse(text: &str) -> Option<Self> {
        let mut set = Self::default();
        for part in text.split(',').filter(|p| !p.is_empty()) {
            let (a, b) = part.split_once('-')?;
            set.0.push((a.parse().ok()?, b.parse().ok()?));
        }
        let sorted = set.0.windows(2).all(|w| w[0].1 < w[1].0) && set.0.iter().all(|(a, b)| a <= b);
        sorted.then_some(set)
    }
}

impl fmt::Display for OffsetRanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (a, b)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{a}-{b}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_round_trip_and_merge() {
        let mut a = OffsetRanges::default();
        for o in [3, 4, 5, 9, 10, 20] {
            a.push(o);
        }
        assert_eq!(a.to_string(), "3-5,9-10,20-20");
        assert_eq!(OffsetRanges::parse(&a.to_string()), Some(a.clone()));
        assert_eq!(a.count(), 6);
        assert!(a.contains(4) && a.contains(20) && !a.contains(6) && !a.contains(2));
        let mut b = OffsetRanges::parse("6-8,19-19,30-31").unwrap();
        b.merge(&a);
        assert_eq!(b.to_string(), "3-10,19-20,30-31");
        assert_eq!(OffsetRanges::parse("5-3"), None);
        assert_eq!(OffsetRanges::parse("1-4,3-6"), None);
    }

    proptest::proptest! {
        /// Offsets pushed in order come back from the text form, and `contains` agrees.
        #[test]
        fn pushed_offsets_round_trip(mut offsets in proptest::collection::vec(0i64..1_000_000, 0..200)) {
            offsets.sort_unstable();
            let mut set = OffsetRanges::default();
            for o in &offsets {
                set.push(*o);
            }
            let parsed = OffsetRanges::parse(&set.to_string());
            proptest::prop_assert_eq!(parsed.as_ref(), Some(&set));
            offsets.dedup();
            proptest::prop_assert_eq!(set.count(), offsets.len() as u64);
            proptest::prop_assert!(offsets.iter().all(|o| set.contains(*o)));
            proptest::prop_assert_eq!(set.iter().collect::<Vec<_>>(), offsets);
        }

        /// Metadata text from a file never makes the parser panic.
        #[test]
        fn any_text_parses_without_panic(text in "[0-9,\\-]{0,40}", other: String) {
            let _ = OffsetRanges::parse(&text);
            let _ = OffsetRanges::parse(&other);
        }
    }
}
