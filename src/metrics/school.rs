//! The per-school families: queries, blocks and incidents with a `school` label, so a
//! trust's dashboard can filter by school.
//!
//! They are separate families rather than a new label on `chaperone_queries_total` and
//! friends so every existing query, alert and dashboard keeps working unchanged. The label
//! is bounded: the config's `[[school]]` ids plus "none" for groups in no school. Handles
//! are resolved per group with the rest of [`super::GroupCounters`], so the query path only
//! increments atomics.

use prometheus::{IntCounter, IntCounterVec, Registry};

use super::{BYPASS, NOT_APPROVED, Outcome, counter_vec};

/// The families.
pub struct SchoolFamilies {
    /// chaperone_school_queries_total{school,outcome}
    pub queries: IntCounterVec,
    /// chaperone_school_blocks_total{school,category}
    pub blocks: IntCounterVec,
    /// chaperone_school_incidents_total{school,category}
    pub incidents: IntCounterVec,
}

impl SchoolFamilies {
    /// Register the families.
    pub fn new(r: &Registry) -> Self {
        Self {
            queries: counter_vec(
                r,
                "chaperone_school_queries_total",
                "DNS queries answered, by school (\"none\": groups in no [[school]]) and outcome.",
                &["school", "outcome"],
            ),
            blocks: counter_vec(
                r,
                "chaperone_school_blocks_total",
                "Blocked queries by school and category.",
                &["school", "category"],
            ),
            incidents: counter_vec(
                r,
                "chaperone_school_incidents_total",
                "Queries for names in illegal categories, by school.",
                &["school", "category"],
            ),
        }
    }

    /// The handles of one school for a bundle's categories.
    pub fn handles(&self, school: &str, categories: &[String]) -> SchoolHandles {
        SchoolHandles {
            outcomes: Outcome::ALL.map(|o| self.queries.with_label_values(&[school, o.label()])),
            blocks: categories
                .iter()
                .map(String::as_str)
                .chain([NOT_APPROVED, BYPASS])
                .map(|c| self.blocks.with_label_values(&[school, c]))
                .collect(),
            incidents: categories
                .iter()
                .map(|c| self.incidents.with_label_values(&[school, c]))
                .collect(),
        }
    }
}

/// Counter handles of one school (shared by its groups: clones of one atomic).
pub struct SchoolHandles {
    pub(super) outcomes: [IntCounter; 5],
    /// One per bundle category, then not-approved, then bypass (as the group's).
    pub(super) blocks: Vec<IntCounter>,
    pub(super) incidents: Vec<IntCounter>,
}

impl SchoolHandles {
    /// Count one block in slot `i` (a category id, or the not-approved/bypass slots).
    pub(super) fn block_slot(&self, i: usize) {
        if let Some(c) = self.blocks.get(i) {
            c.inc();
        }
    }
}
