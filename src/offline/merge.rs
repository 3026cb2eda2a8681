//! Merging the findings of the three checks: when several find the same broken rule of the same field
//! (the same [`RuleId`], never the same words), one problem is reported.

use super::Check;
use crate::constraints::RuleId;

/// A problem before it gets its location.
#[derive(Debug, Clone)]
pub(super) struct Found {
    /// The field's path; empty when the problem is the object itself.
    pub field: String,
    pub message: String,
    /// The kinds of rule the message is about.
    pub rules: &'static [RuleId],
    pub check: Check,
}

impl Found {
    /// Whether `self` (already kept) says what `other` says: a rule of the same kind, about the same field
    /// or, for a rule on a map's keys, about one of the map's keys (`spec.tags key "aws:x"` covers a
    /// rule on all of `spec.tags`' keys).
    fn covers(&self, other: &Found) -> bool {
        self.rules.iter().any(|r| other.rules.contains(r))
            && (self.field == other.field || self.field.starts_with(&format!("{} key ", other.field)))
    }
}

/// One finding for each broken rule of each field, sorted by field, with the other checks that found it.
/// Of the findings that say the same, the first is kept: pass the controller's first (their wording is
/// what the resource's status would say), then the schema's, then the CEL rules'.
pub(super) fn merge(found: impl IntoIterator<Item = Found>) -> Vec<(Found, Vec<Check>)> {
    let mut kept: Vec<(Found, Vec<Check>)> = Vec::new();
    for found in found {
        match kept.iter_mut().find(|(k, _)| k.covers(&found)) {
            Some((k, also)) => {
                if k.check != found.check && !also.contains(&found.check) {
                    also.push(found.check);
                }
            }
            None => kept.push((found, Vec::new())),
        }
    }
    kept.sort_by(|a, b| a.0.field.cmp(&b.0.field));
    kept
}
