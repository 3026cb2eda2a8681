//! The input constraints of Amazon Connect's security-profile operations, as stated by the API model
//! (botocore `connect/2017-08-08/service-2.json`). One source of truth shared by the CRD schema (the
//! schemars attributes and CEL rules of [`crate::api`]) and the controller's validation
//! ([`crate::domain::validate`]). The Connect emulator (crates/connect-emulator), a peer crate, models
//! Connect with its own copy (its `limits`); tests/emulator.rs checks that the two agree.
//! Lengths are counted in characters; a length with only a maximum here is also at least 1 unless
//! its comment says 0.

use std::sync::LazyLock;

use regex::Regex;

/// The security profiles every Connect instance is created with.
pub const DEFAULT_PROFILE_NAMES: &[&str] = &["Admin", "Agent", "CallCenterManager", "QualityAnalyst"];

/// `InstanceId`: length 1..=100.
pub const INSTANCE_ID_MAX: usize = 100;
/// `CreateSecurityProfileName`: length 1..=127, pattern [`PROFILE_NAME_PATTERN`].
pub const PROFILE_NAME_MAX: usize = 127;
pub const PROFILE_NAME_PATTERN: &str = "^[ a-zA-Z0-9_@-]+$";
/// `SecurityProfileDescription`: length 0..=250.
pub const DESCRIPTION_MAX: usize = 250;
/// `PermissionsList`: at most 500 items of 1..=128 characters.
pub const PERMISSIONS_MAX_ITEMS: usize = 500;
pub const PERMISSION_MAX: usize = 128;
/// `TagMap`: 1..=50 entries; key 1..=128 matching [`TAG_KEY_PATTERN`] and not starting with `aws:`; value 0..=256.
pub const TAGS_MAX_ENTRIES: usize = 50;
pub const TAG_KEY_MAX: usize = 128;
pub const TAG_VALUE_MAX: usize = 256;
/// The tags a spec may set: Connect's [`TAGS_MAX_ENTRIES`] less the operator's owner and namespace tags.
pub const SPEC_TAGS_MAX_ENTRIES: usize = TAGS_MAX_ENTRIES - 2;
/// The model's pattern is `^(?!aws:)[\p{L}\p{Z}\p{N}_.:/=+\-@]*$`; the look-ahead is checked separately
/// (`RESERVED_TAG_PREFIX`) because neither Rust's regex nor Kubernetes' schema patterns support it.
pub const TAG_KEY_PATTERN: &str = r"^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$";
pub const RESERVED_TAG_PREFIX: &str = "aws:";
/// `AllowedAccessControlTags`: at most 4 entries; key 1..=128, value 0..=256.
pub const ACCESS_CONTROL_TAGS_MAX_ENTRIES: usize = 4;
/// `TagRestrictedResourceList`: at most 10 items of 1..=128 characters.
pub const TAG_RESTRICTED_RESOURCES_MAX_ITEMS: usize = 10;
/// The resource names the API reference lists as acceptable for tag restrictions.
pub const TAG_RESTRICTED_RESOURCE_NAMES: &[&str] = &["User", "SecurityProfile", "Queue", "RoutingProfile"];
/// The resource names the API reference lists as acceptable for hierarchy restrictions.
pub const HIERARCHY_RESTRICTED_RESOURCE_NAMES: &[&str] = &["User"];
/// Resource names (both restriction lists): 1..=128 characters.
pub const RESOURCE_NAME_MAX: usize = 128;
/// `Applications`: at most 10; `Namespace` 1..=128; `ApplicationPermissions` 1..=50 items of 1..=128.
pub const APPLICATIONS_MAX_ITEMS: usize = 10;
pub const APPLICATION_NAMESPACE_MAX: usize = 128;
pub const APPLICATION_PERMISSIONS_MAX_ITEMS: usize = 50;
pub const APPLICATION_TYPES: &[&str] = &["MCP", "THIRD_PARTY_APPLICATION"];
/// `AllowedFlowModules`: at most 10; `FlowModuleId` 1..=128; `Type` one of [`FLOW_MODULE_TYPES`].
pub const FLOW_MODULES_MAX_ITEMS: usize = 10;
pub const FLOW_MODULE_ID_MAX: usize = 128;
pub const FLOW_MODULE_TYPES: &[&str] = &["MCP"];
/// `AllowedAIAgents`: at most 100; `Type` one of [`AI_AGENT_TYPES`].
pub const AI_AGENTS_MAX_ITEMS: usize = 100;
pub const AI_AGENT_TYPES: &[&str] = &["THIRD_PARTY"];
/// `PrimaryAttributeValuesSet`: at most 5; `AccessType` one of [`ACCESS_TYPES`]; `AttributeName` 1..=127
/// printable Latin-1, not starting with `aws:` or `connect:`; `Values` at most 2 printable Latin-1 strings.
pub const PRIMARY_ATTRIBUTE_VALUES_MAX_ITEMS: usize = 5;
pub const PRIMARY_ATTRIBUTE_NAME_MAX: usize = 127;
pub const PRIMARY_VALUES_MAX_ITEMS: usize = 2;
pub const ACCESS_TYPES: &[&str] = &["ALLOW"];
pub const RESERVED_ATTRIBUTE_PREFIXES: &[&str] = &["aws:", "connect:"];
pub const LATIN1_PRINTABLE_PATTERN: &str = "^[\\t\\n\\r\\x20-\\x7E\\xA1-\\xFF]+$";
/// An AWS Region name such as `us-east-1` or `us-gov-west-1`.
pub const REGION_PATTERN: &str = r"^[a-z]{2}(-[a-z]+){1,2}-[0-9]$";
/// `MaxResult1000` and `MaxResult100` (the SDK's `max_results` takes an i32): the page sizes of the
/// operator's List* and SearchSecurityProfiles calls.
pub const LIST_MAX_RESULTS: i32 = 1000;
pub const SEARCH_MAX_RESULTS: i32 = 100;
/// `NextToken2500`.
pub const SEARCH_NEXT_TOKEN_MAX: usize = 2500;

static PROFILE_NAME_RE: LazyLock<Regex> = LazyLock::new(|| Regex::new(PROFILE_NAME_PATTERN).expect("valid regex"));
static TAG_KEY_RE: LazyLock<Regex> = LazyLock::new(|| Regex::new(TAG_KEY_PATTERN).expect("valid regex"));
static LATIN1_RE: LazyLock<Regex> = LazyLock::new(|| Regex::new(LATIN1_PRINTABLE_PATTERN).expect("valid regex"));
static REGION_RE: LazyLock<Regex> = LazyLock::new(|| Regex::new(REGION_PATTERN).expect("valid regex"));

/// The kind of rule a value breaks. Every check (the CRD schema, its CEL rules, the controller) tags
/// its findings with these, and `connect-operator validate` merges the findings of one field that
/// share one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RuleId {
    /// The value has the wrong JSON type.
    Type,
    /// A required member is missing.
    Required,
    /// A member the schema does not declare (the API server drops it).
    Unknown,
    /// A `null` the API server drops.
    Null,
    /// A string's length (in characters).
    Length,
    /// A list's number of items.
    Items,
    /// A map's number of entries.
    Entries,
    /// A string's pattern (allowed characters).
    Pattern,
    /// A value outside an enumeration.
    Enum,
    /// A reserved prefix (`aws:`, `connect:`).
    ReservedPrefix,
    /// A tag key under the operator's own prefix.
    OperatorReserved,
    /// A member that must not change.
    Immutable,
    /// Anything else.
    Other,
}

impl RuleId {
    /// Every rule kind, in declaration order.
    pub const ALL: [RuleId; 13] = [
        RuleId::Type,
        RuleId::Required,
        RuleId::Unknown,
        RuleId::Null,
        RuleId::Length,
        RuleId::Items,
        RuleId::Entries,
        RuleId::Pattern,
        RuleId::Enum,
        RuleId::ReservedPrefix,
        RuleId::OperatorReserved,
        RuleId::Immutable,
        RuleId::Other,
    ];

    /// `[self]`, as a slice that lives forever.
    pub fn slice(self) -> &'static [RuleId] {
        let i = self as usize;
        &Self::ALL[i..=i]
    }
}

/// Length as the API model counts it: in characters, not bytes.
pub fn char_len(s: &str) -> usize {
    s.chars().count()
}

pub fn is_valid_profile_name(name: &str) -> bool {
    (1..=PROFILE_NAME_MAX).contains(&char_len(name)) && PROFILE_NAME_RE.is_match(name)
}

/// Why a tag key is invalid, or `None` when it is valid.
pub fn tag_key_problem(key: &str) -> Option<String> {
    tag_key_violation(key).map(|(_, message)| message)
}

/// Which rule a tag key breaks and why, or `None` when it is valid.
pub fn tag_key_violation(key: &str) -> Option<(RuleId, String)> {
    let len = char_len(key);
    if !(1..=TAG_KEY_MAX).contains(&len) {
        return Some((RuleId::Length, format!("must be 1 to {TAG_KEY_MAX} characters long, is {len}")));
    }
    if key.starts_with(RESERVED_TAG_PREFIX) {
        return Some((
            RuleId::ReservedPrefix,
            format!("must not begin with the reserved prefix {RESERVED_TAG_PREFIX:?}"),
        ));
    }
    if !TAG_KEY_RE.is_match(key) {
        let message = "may contain only letters, numbers, spaces and the characters _ . : / = + - @";
        return Some((RuleId::Pattern, message.to_string()));
    }
    None
}

pub fn is_latin1_printable(s: &str) -> bool {
    LATIN1_RE.is_match(s)
}

pub fn is_region_name(s: &str) -> bool {
    REGION_RE.is_match(s)
}

/// Why a primary attribute name is invalid, or `None` when it is valid.
pub fn attribute_name_problem(name: &str) -> Option<String> {
    attribute_name_violation(name).map(|(_, message)| message)
}

/// Which rule a primary attribute name breaks and why, or `None` when it is valid.
pub fn attribute_name_violation(name: &str) -> Option<(RuleId, String)> {
    let len = char_len(name);
    if !(1..=PRIMARY_ATTRIBUTE_NAME_MAX).contains(&len) {
        return Some((RuleId::Length, format!("must be 1 to {PRIMARY_ATTRIBUTE_NAME_MAX} characters long, is {len}")));
    }
    if let Some(prefix) = RESERVED_ATTRIBUTE_PREFIXES.iter().find(|p| name.starts_with(**p)) {
        return Some((RuleId::ReservedPrefix, format!("must not begin with the reserved prefix {prefix:?}")));
    }
    if !is_latin1_printable(name) {
        return Some((RuleId::Pattern, "may contain only printable Latin-1 characters".to_string()));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_names_follow_the_model_pattern() {
        assert!(is_valid_profile_name("Agent Tier-2_@ops"));
        assert!(!is_valid_profile_name(""));
        assert!(!is_valid_profile_name("no/slashes"));
        assert!(!is_valid_profile_name(&"a".repeat(128)));
        assert!(is_valid_profile_name(&"a".repeat(127)));
    }

    #[test]
    fn tag_keys_reject_reserved_prefix_and_odd_characters() {
        assert_eq!(tag_key_problem("connect.cloud-operators.dev/owner-uid"), None);
        assert_eq!(tag_key_problem("Kostenstelle ä 1"), None);
        assert!(tag_key_problem("aws:createdBy").unwrap().contains("reserved prefix"));
        assert!(tag_key_problem("a*b").unwrap().contains("may contain only"));
        assert!(tag_key_problem("").unwrap().contains("1 to 128"));
    }

    #[test]
    fn each_rule_id_slices_to_itself() {
        for (i, rule) in RuleId::ALL.into_iter().enumerate() {
            assert_eq!(rule as usize, i);
            assert_eq!(rule.slice(), [rule]);
        }
    }

    #[test]
    fn attribute_names_reject_reserved_prefixes() {
        assert_eq!(attribute_name_problem("department"), None);
        assert!(attribute_name_problem("connect:x").unwrap().contains("connect:"));
        assert!(attribute_name_problem("snow☃").unwrap().contains("Latin-1"));
    }
}
