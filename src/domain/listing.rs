//! What one listing of an instance says about its profiles (ListSecurityProfiles for LastModifiedTime,
//! SearchSecurityProfiles for description and tags), and the pure comparison that tells a reconciler
//! whether a profile needs a full read: only those whose LastModifiedTime moved past what the status
//! recorded, that vanished, or whose description or tags differ from the spec.

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};

/// What a listing keeps of one profile: only what the comparison needs. Description and tags are kept
/// as a digest, not as copies: an operator watching 1,000 profiles holds one listing per instance and
/// one expectation per profile, and copies of every description and tag cost more memory than the rest
/// of the observation together.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ListedProfile {
    /// From ListSecurityProfiles (RFC 3339, as DescribeSecurityProfile's).
    pub last_modified: Option<String>,
    /// [`content_digest`] of the description and tags, when the listing included a search
    /// (SearchSecurityProfiles) and the search found the profile.
    pub content: Option<u64>,
}

/// A digest of a profile's description and tags (the members SearchSecurityProfiles returns), for the
/// listing's comparison. 64 bits of SipHash with fixed keys: stable within the process, which is as
/// long as a listing or an expectation lives.
pub fn content_digest(description: &str, tags: &BTreeMap<String, String>) -> u64 {
    let mut h = DefaultHasher::new();
    description.hash(&mut h);
    tags.hash(&mut h);
    h.finish()
}

/// An instance's profiles at one moment, by profile ID.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Listing {
    pub profiles: HashMap<String, ListedProfile>,
    /// Whether description and tags were read (SearchSecurityProfiles) in this listing.
    pub searched: bool,
}

/// What the reconciler knows a profile should look like in a listing.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Expectation {
    /// The LastModifiedTime of the last full read (None: not known yet, e.g. just created).
    pub last_modified: Option<String>,
    /// [`content_digest`] of the description and of every tag the profile carries (the spec's and the
    /// owner tag).
    pub content: u64,
}

impl Expectation {
    pub fn new(last_modified: Option<String>, description: &str, tags: &BTreeMap<String, String>) -> Self {
        Self { last_modified, content: content_digest(description, tags) }
    }
}

/// The comparison of one profile with a listing.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Nothing changed: no call needed.
    Unchanged,
    /// The listing gives the LastModifiedTime the status has not recorded yet, and what it shows
    /// matches: record it (a profile the operator just created from the spec).
    Baseline(String),
    /// Connect changed it, or it differs from the spec: read it in full and repair.
    Changed,
    /// Not in the listing.
    Missing,
}

impl Listing {
    pub fn verdict(&self, id: &str, expect: &Expectation) -> Verdict {
        let Some(p) = self.profiles.get(id) else { return Verdict::Missing };
        // Searched and found by the search: its description and tags are known. (A search's pages can
        // miss a profile while profiles are being created: then nothing is said about them.)
        let searched = self.searched && p.content.is_some();
        if searched && p.content != Some(expect.content) {
            return Verdict::Changed;
        }
        match (&expect.last_modified, &p.last_modified) {
            (Some(recorded), Some(listed)) if recorded == listed => Verdict::Unchanged,
            (None, Some(listed)) if searched => Verdict::Baseline(listed.clone()),
            // Just written by the operator: the next listing with descriptions and tags confirms it.
            (None, Some(_)) => Verdict::Unchanged,
            _ => Verdict::Changed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(searched: bool, last_modified: &str, description: &str) -> Listing {
        let tags = BTreeMap::from([("team".into(), "a".into())]);
        let p = ListedProfile {
            last_modified: Some(last_modified.into()),
            content: searched.then(|| content_digest(description, &tags)),
        };
        Listing { profiles: HashMap::from([("sp-1".into(), p)]), searched }
    }

    fn expect(last_modified: Option<&str>) -> Expectation {
        Expectation::new(last_modified.map(str::to_string), "agents", &BTreeMap::from([("team".into(), "a".into())]))
    }

    #[test]
    fn only_what_moved_or_differs_needs_a_read() {
        let t1 = "2026-11-29T10:00:00Z";
        assert_eq!(listing(true, t1, "agents").verdict("sp-1", &expect(Some(t1))), Verdict::Unchanged);
        assert_eq!(listing(false, t1, "").verdict("sp-1", &expect(Some(t1))), Verdict::Unchanged, "list only");
        let t2 = "2026-11-29T10:05:00Z";
        assert_eq!(listing(true, t2, "agents").verdict("sp-1", &expect(Some(t1))), Verdict::Changed, "modified");
        assert_eq!(listing(true, t1, "edited").verdict("sp-1", &expect(Some(t1))), Verdict::Changed, "description");
        let mut tagged = expect(Some(t1));
        tagged.content = content_digest("agents", &BTreeMap::from([("team".into(), "b".into())]));
        assert_eq!(listing(true, t1, "agents").verdict("sp-1", &tagged), Verdict::Changed, "a tag");
        assert_eq!(listing(true, t1, "agents").verdict("sp-2", &expect(Some(t1))), Verdict::Missing);
        let mut missed_by_search = listing(true, t1, "agents");
        missed_by_search.profiles.get_mut("sp-1").unwrap().content = None;
        assert_eq!(
            missed_by_search.verdict("sp-1", &expect(None)),
            Verdict::Unchanged,
            "no baseline without a search hit"
        );
        assert_eq!(
            listing(true, t1, "agents").verdict("sp-1", &expect(None)),
            Verdict::Baseline(t1.into()),
            "just created: the listing's time becomes the baseline"
        );
        assert_eq!(
            listing(false, t1, "").verdict("sp-1", &expect(None)),
            Verdict::Unchanged,
            "no baseline without a search: the next searched listing takes it"
        );
    }
}
