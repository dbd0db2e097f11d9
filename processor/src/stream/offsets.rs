//! Which input offsets may be stored: the per-partition bookkeeping of in-flight messages.
//!
//! A message is *begun* when it is consumed and *finished* once every good event and bad row
//! produced from it has been acknowledged by the broker. Messages finish out of order; the offset
//! stored for a partition is the next one to read after the longest fully finished prefix: the
//! smallest unfinished offset, or the highest begun offset + 1 when nothing is unfinished. It only
//! ever moves forward.
//!
//! A revoked partition forgets its in-flight messages: their tickets carry the partition's old
//! generation, so finishing them later stores nothing (another consumer, or this one after a
//! new assignment, reads them again from the last committed offset).

use std::collections::{BTreeSet, HashMap};

/// One consumed message, as the tracker knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    /// The input topic.
    pub topic: String,
    /// The input partition.
    pub partition: i32,
    /// The message's offset.
    pub offset: i64,
    generation: u64,
}

#[derive(Debug)]
struct PartitionState {
    generation: u64,
    unfinished: BTreeSet<i64>,
    highest_begun: i64,
    /// The last offset stored: the next to read. Starts at the first offset begun, where the
    /// group's committed position already is.
    stored: i64,
}

/// The in-flight messages of every assigned partition.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: HashMap<(String, i32), PartitionState>,
    next_generation: u64,
}

impl OffsetTracker {
    /// An empty tracker.
    pub fn new() -> OffsetTracker {
        OffsetTracker::default()
    }

    /// Records that the message at `offset` was consumed and its outputs are being produced.
    /// Offsets of one partition are begun in increasing order, as a consumer reads them.
    pub fn begin(&mut self, topic: &str, partition: i32, offset: i64) -> Ticket {
        let key = (topic.to_owned(), partition);
        let next_generation = &mut self.next_generation;
        let state = self.partitions.entry(key).or_insert_with(|| {
            *next_generation += 1;
            PartitionState {
                generation: *next_generation,
                unfinished: BTreeSet::new(),
                highest_begun: offset - 1,
                stored: offset,
            }
        });
        state.unfinished.insert(offset);
        state.highest_begun = state.highest_begun.max(offset);
        Ticket {
            topic: topic.to_owned(),
            partition,
            offset,
            generation: state.generation,
        }
    }

    /// Records that every output of the ticket's message was acknowledged. Returns the offset to
    /// store for its partition (the next offset to read) when it moved forward, `None` when it did
    /// not or when the partition was revoked since the ticket was given.
    pub fn finish(&mut self, ticket: &Ticket) -> Option<i64> {
        let state = self
            .partitions
            .get_mut(&(ticket.topic.clone(), ticket.partition))?;
        if state.generation != ticket.generation || !state.unfinished.remove(&ticket.offset) {
            return None;
        }
        let next = state
            .unfinished
            .first()
            .copied()
            .unwrap_or(state.highest_begun + 1);
        if state.stored >= next {
            return None;
        }
        state.stored = next;
        Some(next)
    }

    /// Forgets a revoked partition and its unfinished messages.
    pub fn revoke(&mut self, topic: &str, partition: i32) {
        self.partitions.remove(&(topic.to_owned(), partition));
    }

    /// Forgets every partition.
    pub fn revoke_all(&mut self) {
        self.partitions.clear();
    }

    /// Messages begun and not finished, over all partitions.
    pub fn in_flight(&self) -> usize {
        self.partitions.values().map(|p| p.unfinished.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_the_longest_finished_prefix_only() {
        let mut t = OffsetTracker::new();
        let a = t.begin("raw", 0, 10);
        let b = t.begin("raw", 0, 11);
        let c = t.begin("raw", 0, 12);
        assert_eq!(t.in_flight(), 3);
        // 11 and 12 done, 10 not: nothing can be stored.
        assert_eq!(t.finish(&b), None);
        assert_eq!(t.finish(&c), None);
        // 10 done: everything up to 12 is, the next offset to read is 13.
        assert_eq!(t.finish(&a), Some(13));
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn stores_up_to_the_first_unfinished_offset() {
        let mut t = OffsetTracker::new();
        let a = t.begin("raw", 0, 0);
        let b = t.begin("raw", 0, 1);
        let c = t.begin("raw", 0, 5);
        assert_eq!(t.finish(&a), Some(1));
        assert_eq!(t.finish(&c), None);
        assert_eq!(t.finish(&b), Some(6));
        // Finishing twice changes nothing.
        assert_eq!(t.finish(&b), None);
    }

    #[test]
    fn partitions_are_independent() {
        let mut t = OffsetTracker::new();
        let a0 = t.begin("raw", 0, 7);
        let a1 = t.begin("raw", 1, 3);
        let b0 = t.begin("raw", 0, 8);
        assert_eq!(t.finish(&a1), Some(4));
        assert_eq!(t.finish(&b0), None);
        assert_eq!(t.finish(&a0), Some(9));
    }

    #[test]
    fn revoked_work_never_stores() {
        let mut t = OffsetTracker::new();
        let a = t.begin("raw", 0, 20);
        let b = t.begin("raw", 0, 21);
        t.revoke("raw", 0);
        assert_eq!(t.in_flight(), 0);
        // Assigned again, from the committed offset 20.
        let again = t.begin("raw", 0, 20);
        assert_eq!(t.finish(&b), None);
        assert_eq!(t.finish(&a), None);
        assert_eq!(t.in_flight(), 1);
        assert_eq!(t.finish(&again), Some(21));
        t.revoke_all();
        assert_eq!(t.finish(&again), None);
    }
}
