//! A consumer group seen from outside, for `tickflow status`: its members and what each is
//! assigned, and its committed offsets.

use std::time::Duration;

use rdkafka::consumer::Consumer;

use super::consumer::{ConsumerSettings, Group, Part, Position};
use super::{KafkaError, client_config, consumer};
use crate::config::KafkaConfig;

/// One member of a consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The member's client id (tickflow sets it to the instance id when there is one).
    pub client_id: String,
    /// The host the member connected from.
    pub host: String,
    /// The partitions assigned to it: (topic, partition).
    pub partitions: Vec<(String, i32)>,
}

/// The state of a group (`Stable`, `PreparingRebalance`, `Empty`, `Dead`, ...) and its
/// members with their assignments; no members when no instance runs.
pub fn describe(cfg: &KafkaConfig, group: &str) -> Result<(String, Vec<Member>), KafkaError> {
    let consumer = consumer(cfg, &client_config(cfg))?;
    let list = consumer.fetch_group_list(Some(group), wait(cfg))?;
    let Some(info) = list.groups().iter().find(|g| g.name() == group) else {
        return Ok(("Dead".into(), Vec::new()));
    };
    let members = info
        .members()
        .iter()
        .map(|m| Member {
            client_id: m.client_id().to_string(),
            host: m.client_host().to_string(),
            partitions: m.assignment().map(assigned).unwrap_or_default(),
        })
        .collect();
    Ok((info.state().to_string(), members))
}

/// The partitions of a consumer-protocol assignment (version, then topics with their
/// partitions, then user data); what cannot be read is left out.
pub fn assigned(bytes: &[u8]) -> Vec<(String, i32)> {
    let mut r = Reader(bytes);
    let mut out = Vec::new();
    let _version = r.i16();
    let Some(topics) = r.i32() else {
        return out;
    };
    for _ in 0..topics.max(0) {
        let Some(topic) = r.string() else {
            return out;
        };
        let Some(n) = r.i32() else {
            return out;
        };
        for _ in 0..n.max(0) {
            match r.i32() {
                Some(p) => out.push((topic.clone(), p)),
                None => return out,
            }
        }
    }
    out
}

/// Big-endian reads from the front of a byte slice.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }
    fn i16(&mut self) -> Option<i16> {
        self.take().map(i16::from_be_bytes)
    }
    fn i32(&mut self) -> Option<i32> {
        self.take().map(i32::from_be_bytes)
    }
    fn string(&mut self) -> Option<String> {
        let len = usize::try_from(self.i16()?).ok()?;
        let (s, rest) = (self.0.get(..len)?, &self.0[len..]);
        self.0 = rest;
        String::from_utf8(s.to_vec()).ok()
    }
}

/// The offsets `group` committed for `partitions` (topic, partition), in order; `None`
/// where it has none. Asked from outside the group, which this never joins.
pub fn committed(
    cfg: &KafkaConfig,
    group: &str,
    partitions: &[Part],
) -> Result<Vec<Option<i64>>, KafkaError> {
    let consumer = ConsumerSettings::reader(group).create(cfg)?;
    Group::committed(&consumer, partitions)
}

/// Commits `offsets` (topic, partition, next offset) for `group` from outside it, as a
/// reset does; a broker refuses while the group has members.
pub fn commit_offsets(
    cfg: &KafkaConfig,
    group: &str,
    offsets: &[Position],
) -> Result<(), KafkaError> {
    let consumer = ConsumerSettings::reader(group).create(cfg)?;
    Group::commit(&consumer, offsets, true)
}

fn wait(cfg: &KafkaConfig) -> Duration {
    cfg.connect_timeout.max(Duration::from_secs(10))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(topics: &[(&str, &[i32])], user_data: &[u8]) -> Vec<u8> {
        let mut b = 1i16.to_be_bytes().to_vec();
        b.extend((topics.len() as i32).to_be_bytes());
        for (t, ps) in topics {
            b.extend((t.len() as i16).to_be_bytes());
            b.extend(t.as_bytes());
            b.extend((ps.len() as i32).to_be_bytes());
            for p in *ps {
                b.extend(p.to_be_bytes());
            }
        }
        b.extend((user_data.len() as i32).to_be_bytes());
        b.extend(user_data);
        b
    }

    #[test]
    fn assignments_read_back() {
        let bytes = assignment(&[("ticks", &[0, 3]), ("app-repartition", &[1])], b"u");
        let want =
            [("ticks", 0), ("ticks", 3), ("app-repartition", 1)].map(|(t, p)| (t.to_string(), p));
        assert_eq!(assigned(&bytes), want);
        assert_eq!(assigned(&[]), []);
        // Cut short: what was read whole is kept.
        assert_eq!(assigned(&bytes[..bytes.len() - 15]), want[..2]);
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_read_without_panic(bytes: Vec<u8>) {
            let _ = assigned(&bytes);
        }
    }
}
