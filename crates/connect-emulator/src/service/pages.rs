//! Pagination: opaque `NextToken`s and the page of items they select.

use crate::ApiError;

/// Opaque pagination tokens; anything else is refused like Connect refuses a forged token.
fn encode_token(kind: &str, offset: usize) -> String {
    format!("{kind}.{offset:08x}.emu")
}

pub(super) fn decode_token(token: Option<&String>, kind: &str) -> Result<usize, ApiError> {
    let Some(token) = token else { return Ok(0) };
    token
        .strip_prefix(&format!("{kind}."))
        .and_then(|rest| rest.strip_suffix(".emu"))
        .and_then(|hex| usize::from_str_radix(hex, 16).ok())
        .ok_or_else(|| {
            ApiError::invalid_parameter(format!("NextToken: {token:?} is not a token this operation issued"))
        })
}

pub(super) fn page<T: Clone>(items: &[T], offset: usize, max: usize, kind: &str) -> (Vec<T>, Option<String>) {
    let end = (offset + max).min(items.len());
    let slice = items.get(offset..end).unwrap_or(&[]).to_vec();
    let next = (end < items.len()).then(|| encode_token(kind, end));
    (slice, next)
}
