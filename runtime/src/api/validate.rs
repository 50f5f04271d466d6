//! Request validation: the bounds a request must keep (names, keys, waits) and the
//! parsing of what a client wrote (deadlines, scan prefixes), each refusal a precise
//! status.

use std::time::Duration;

use datamesh_compiler::exec::codec::{excerpt, parse_key};
use datamesh_stdlib::Value;
use tonic::{Request, Status};

/// The longest key the store holds, encoded: fjall panics on a longer one, so a longer
/// key, prefix or bound is refused before it gets there.
pub(super) const MAX_STORE_KEY: usize = u16::MAX as usize;

/// An encoded key (or prefix, or bound) the store can be asked for.
pub(super) fn storable(what: &str, text: &str, encoded: Vec<u8>) -> Result<Vec<u8>, Status> {
    if encoded.len() > MAX_STORE_KEY {
        return Err(Status::invalid_argument(format!(
            "{what} `{}` is {} bytes encoded; keys are at most {MAX_STORE_KEY} bytes",
            excerpt(text),
            encoded.len()
        )));
    }
    Ok(encoded)
}

/// A projection name no program could declare (over [`MAX_NAME`] bytes) is not looked
/// up, so no message quotes it whole.
pub(super) fn unknown_if_too_long(name: &str) -> Result<(), Status> {
    if name.len() > MAX_NAME {
        return Err(Status::not_found(format!(
            "no projection `{}` is deployed",
            excerpt(name)
        )));
    }
    Ok(())
}

/// The longest event type, stream or id an append may carry (bytes).
pub(super) const MAX_NAME: usize = 1024;

pub(super) const MAX_WAIT: Duration = Duration::from_secs(30);

/// Documents one append may read back.
pub(super) const MAX_READ_BACK: usize = 16;

pub(super) fn wait_budget<T>(request: &Request<T>) -> Duration {
    // gRPC deadlines arrive as `grpc-timeout: <n><unit>`.
    let parsed = request
        .metadata()
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout);
    parsed.map_or(MAX_WAIT, |d| d.min(MAX_WAIT))
}

/// A `grpc-timeout` value (`<digits><unit>`), saturating: the spec allows 8 digits,
/// but a longer value means "a long time", and multiplying it by its unit must not
/// wrap (2^60 hours wrapped to 0, an immediate deadline). A value too long even for
/// a `u64` saturates too.
pub(super) fn parse_grpc_timeout(text: &str) -> Option<Duration> {
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().unwrap_or(u64::MAX);
    let secs = |per: u64| Duration::from_secs(n.saturating_mul(per));
    Some(match unit {
        "H" => secs(3600),
        "M" => secs(60),
        "S" => secs(1),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Parses a scan prefix: a JSON array of leading key parts, or one part's text.
pub(super) fn parse_prefix(
    types: &[datamesh_compiler::ir::Type],
    text: &str,
) -> Result<Vec<Value>, String> {
    if text.trim_start().starts_with('[') {
        let json: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("prefix: {e}"))?;
        let items = json.as_array().cloned().unwrap_or_default();
        if items.len() > types.len() {
            return Err(format!(
                "the prefix has {} parts, the key only {}",
                items.len(),
                types.len()
            ));
        }
        types
            .iter()
            .zip(&items)
            .map(|(ty, item)| datamesh_compiler::exec::codec::decode_value(ty, item))
            .collect()
    } else {
        let first = types
            .first()
            .ok_or("this projection has a single document and no key")?;
        parse_key(std::slice::from_ref(first), text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_saturates_instead_of_wrapping() {
        // 2^60 hours: 2^60 * 3600 wrapped to 0 (an immediate deadline).
        let huge = parse_grpc_timeout("1152921504606846976H").expect("parsed");
        assert!(huge >= Duration::from_secs(u64::MAX / 2), "{huge:?}");
        assert!(parse_grpc_timeout("99999999999999999999999M").expect("parsed") > huge / 2);
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("3S"), Some(Duration::from_secs(3)));
        for bad in ["", "H", "-1S", "1x", "1.5S", "+3S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad}");
        }
    }
}
