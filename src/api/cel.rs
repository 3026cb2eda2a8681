//! The CEL rules (`x-kubernetes-validations`) of the CRD, built from the limits in
//! [`crate::constraints`]. Each rule says which kinds of rule ([`RuleId`]) it enforces, so that
//! `connect-operator validate` can tell when a CEL rule and another check found the same problem; the
//! rule's expression identifies it in the CEL evaluator's findings.

use std::sync::LazyLock;

use kube::core::Rule;

use crate::constraints::{self as c, RuleId};

/// One CEL rule of the CRD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CelRule {
    /// The CEL expression; it identifies the rule.
    pub expression: String,
    pub message: String,
    /// The kinds of rule it enforces.
    pub rules: &'static [RuleId],
}

impl CelRule {
    /// The rule as the schema attributes take it.
    pub fn rule(&self) -> Rule {
        Rule::new(self.expression.as_str()).message(self.message.as_str())
    }
}

/// A CEL string literal (single-quoted) holding `s`.
fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

pub static INSTANCE_ID_IMMUTABLE: LazyLock<CelRule> = LazyLock::new(|| CelRule {
    expression: "self == oldSelf".into(),
    message: "instanceId is immutable; create a new SecurityProfile to move a profile to another instance".into(),
    rules: &[RuleId::Immutable],
});

pub static PROFILE_NAME_IMMUTABLE: LazyLock<CelRule> = LazyLock::new(|| CelRule {
    expression: "self == oldSelf".into(),
    message: "securityProfileName is immutable: Connect cannot rename a profile; create a new SecurityProfile instead"
        .into(),
    rules: &[RuleId::Immutable],
});

pub static REGION_IMMUTABLE: LazyLock<CelRule> = LazyLock::new(|| CelRule {
    expression: "self == oldSelf".into(),
    message: "region is immutable once set: the profile stays in its Region; create a new SecurityProfile for another"
        .into(),
    rules: &[RuleId::Immutable],
});

pub static ACCESS_CONTROL_TAG_KEYS: LazyLock<CelRule> = LazyLock::new(|| CelRule {
    expression: format!("self.all(k, size(k) >= 1 && size(k) <= {})", c::TAG_KEY_MAX),
    message: format!("allowedAccessControlTags keys must be 1 to {} characters long", c::TAG_KEY_MAX),
    rules: &[RuleId::Length],
});

pub static TAG_KEYS_NOT_RESERVED: LazyLock<CelRule> = LazyLock::new(|| CelRule {
    expression: format!("self.all(k, !k.startsWith({}))", quoted(c::RESERVED_TAG_PREFIX)),
    message: format!("tag keys must not begin with the reserved prefix {}", c::RESERVED_TAG_PREFIX),
    rules: &[RuleId::ReservedPrefix],
});

pub static TAG_KEYS_NOT_OPERATOR_RESERVED: LazyLock<CelRule> = LazyLock::new(|| {
    let reserved = super::operator_tag_prefix();
    CelRule {
        expression: format!("self.all(k, !k.startsWith({}))", quoted(&reserved)),
        message: format!("tag keys under {reserved} are reserved for the operator"),
        rules: &[RuleId::OperatorReserved],
    }
});

pub static TAG_KEYS: LazyLock<CelRule> = LazyLock::new(|| CelRule {
    expression: format!(
        "self.all(k, size(k) >= 1 && size(k) <= {} && k.matches({}))",
        c::TAG_KEY_MAX,
        quoted(c::TAG_KEY_PATTERN)
    ),
    message: format!("tag keys must be 1 to {} letters, numbers, spaces or _ . : / = + - @", c::TAG_KEY_MAX),
    rules: &[RuleId::Length, RuleId::Pattern],
});

pub static ATTRIBUTE_NAME_NOT_RESERVED: LazyLock<CelRule> = LazyLock::new(|| {
    let prefixes = c::RESERVED_ATTRIBUTE_PREFIXES;
    CelRule {
        expression: prefixes
            .iter()
            .map(|p| format!("!self.startsWith({})", quoted(p)))
            .collect::<Vec<_>>()
            .join(" && "),
        message: format!("attributeName must not begin with {}", prefixes.join(" or ")),
        rules: &[RuleId::ReservedPrefix],
    }
});

/// Every CEL rule of the CRD.
pub fn all() -> [&'static CelRule; 7] {
    [
        &INSTANCE_ID_IMMUTABLE,
        &PROFILE_NAME_IMMUTABLE,
        &ACCESS_CONTROL_TAG_KEYS,
        &TAG_KEYS_NOT_RESERVED,
        &TAG_KEYS_NOT_OPERATOR_RESERVED,
        &TAG_KEYS,
        &ATTRIBUTE_NAME_NOT_RESERVED,
    ]
}

/// The kinds of rule the CEL rule with this expression enforces ([`RuleId::Other`] for one this CRD
/// does not have).
pub fn rule_ids(expression: &str) -> &'static [RuleId] {
    all().into_iter().find(|r| r.expression == expression).map_or(RuleId::Other.slice(), |r| r.rules)
}
