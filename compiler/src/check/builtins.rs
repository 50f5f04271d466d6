//! Signatures of the standard-library functions: name and argument types to a resolved
//! [`Builtin`] and its result type.
//!
//! Invariant: every overload accepted here is implemented by the interpreter (and the
//! code generator) for exactly the argument types listed, so engines can dispatch on
//! the `Builtin` plus the static argument types without re-checking.

use crate::ir::{Builtin, Type};

/// Every function name a program may call, for "did you mean" suggestions.
pub const NAMES: &[&str] = &[
    "lower",
    "upper",
    "trim",
    "len",
    "contains",
    "starts_with",
    "ends_with",
    "concat",
    "substring",
    "replace",
    "split",
    "to_string",
    "parse_int",
    "parse_float",
    "abs",
    "min",
    "max",
    "round",
    "floor",
    "ceil",
    "to_int",
    "to_float",
    "pow",
    "sqrt",
    "day",
    "month",
    "year",
    "hour",
    "minute",
    "day_of_month",
    "weekday",
    "start_of_day",
    "days",
    "hours",
    "minutes",
    "seconds",
    "millis",
    "to_days",
    "to_hours",
    "to_minutes",
    "to_seconds",
    "to_millis",
    "to_micros",
    "parse_time",
    "parse_duration",
    "first",
    "last",
    "get",
    "sum",
    "keys",
    "values",
    "is_some",
];

/// Why a call did not resolve.
#[derive(Debug, Clone, PartialEq)]
pub enum CallError {
    /// No function of this name.
    Unknown,
    /// Wrong number of arguments: the expected signature(s).
    Arity(&'static str),
    /// Wrong argument types: the expected signature(s).
    Types(&'static str),
}

/// Resolves a call of `name` with arguments of the given types.
///
/// # Errors
/// `CallError` when the name is unknown or no overload accepts the arguments.
pub fn resolve(name: &str, args: &[Type]) -> Result<(Builtin, Type), CallError> {
    use Type as T;
    // Arguments that already failed to check are accepted as anything.
    let any_error = args.contains(&T::Error);
    let sig = signature(name).ok_or(CallError::Unknown)?;
    let fail = |arity_ok: bool| {
        if arity_ok {
            CallError::Types(sig)
        } else {
            CallError::Arity(sig)
        }
    };
    let s = T::String;
    let result = match (name, args) {
        ("lower", [a]) if *a == s => (Builtin::Lower, s),
        ("upper", [a]) if *a == s => (Builtin::Upper, s),
        ("trim", [a]) if *a == s => (Builtin::Trim, s),
        ("len", [T::String | T::List(_) | T::Set(_) | T::Map(..)]) => (Builtin::Len, T::Int),
        ("contains", [a, b]) => match (a, b) {
            (T::String, T::String) => (Builtin::Contains, T::Bool),
            (T::List(e) | T::Set(e), x) if x.fits(e) => (Builtin::Contains, T::Bool),
            (T::Map(k, _), x) if x.fits(k) => (Builtin::Contains, T::Bool),
            _ => return Err(fail(true)),
        },
        ("starts_with", [a, b]) if *a == s && *b == s => (Builtin::StartsWith, T::Bool),
        ("ends_with", [a, b]) if *a == s && *b == s => (Builtin::EndsWith, T::Bool),
        ("concat", parts) if !parts.is_empty() && parts.iter().all(|p| *p == s) => {
            (Builtin::Concat, s)
        }
        ("substring", [a, b, c]) if *a == s && *b == T::Int && *c == T::Int => {
            (Builtin::Substring, s)
        }
        ("replace", [a, b, c]) if *a == s && *b == s && *c == s => (Builtin::Replace, s),
        ("split", [a, b]) if *a == s && *b == s => (Builtin::Split, T::List(Box::new(s))),
        ("to_string", [_]) => (Builtin::ToString, s),
        ("parse_int", [a]) if *a == s => (Builtin::ParseInt, T::Int),
        ("parse_float", [a]) if *a == s => (Builtin::ParseFloat, T::Float),
        ("abs", [a]) if matches!(a, T::Int | T::Float | T::Duration) => (Builtin::Abs, a.clone()),
        ("min" | "max", [a, b]) if a == b && a.is_ordered() => {
            let f = if name == "min" {
                Builtin::Min
            } else {
                Builtin::Max
            };
            (f, a.clone())
        }
        ("round", [T::Float]) => (Builtin::Round, T::Int),
        ("floor", [T::Float]) => (Builtin::Floor, T::Int),
        ("ceil", [T::Float]) => (Builtin::Ceil, T::Int),
        ("to_int", [T::Float]) => (Builtin::ToInt, T::Int),
        ("to_float", [T::Int]) => (Builtin::ToFloat, T::Float),
        ("pow", [T::Int, T::Int]) => (Builtin::Pow, T::Int),
        ("sqrt", [T::Float]) => (Builtin::Sqrt, T::Float),
        ("day", [T::Timestamp]) => (Builtin::Day, s),
        ("month", [T::Timestamp]) => (Builtin::Month, s),
        ("year", [T::Timestamp]) => (Builtin::Year, T::Int),
        ("hour", [T::Timestamp]) => (Builtin::Hour, T::Int),
        ("minute", [T::Timestamp]) => (Builtin::Minute, T::Int),
        ("day_of_month", [T::Timestamp]) => (Builtin::DayOfMonth, T::Int),
        ("weekday", [T::Timestamp]) => (Builtin::Weekday, T::Int),
        ("start_of_day", [T::Timestamp]) => (Builtin::StartOfDay, T::Timestamp),
        ("days", [T::Int]) => (Builtin::Days, T::Duration),
        ("hours", [T::Int]) => (Builtin::Hours, T::Duration),
        ("minutes", [T::Int]) => (Builtin::Minutes, T::Duration),
        ("seconds", [T::Int]) => (Builtin::Seconds, T::Duration),
        ("millis", [T::Int]) => (Builtin::Millis, T::Duration),
        ("to_days", [T::Duration]) => (Builtin::ToDays, T::Int),
        ("to_hours", [T::Duration]) => (Builtin::ToHours, T::Int),
        ("to_minutes", [T::Duration]) => (Builtin::ToMinutes, T::Int),
        ("to_seconds", [T::Duration]) => (Builtin::ToSeconds, T::Int),
        ("to_millis", [T::Duration]) => (Builtin::ToMillis, T::Int),
        ("to_micros", [T::Duration]) => (Builtin::ToMicros, T::Int),
        ("parse_time", [a]) if *a == s => (Builtin::ParseTime, T::Timestamp),
        ("parse_duration", [a]) if *a == s => (Builtin::ParseDuration, T::Duration),
        ("first", [T::List(e)]) => (Builtin::First, T::Optional(e.clone())),
        ("last", [T::List(e)]) => (Builtin::Last, T::Optional(e.clone())),
        ("get", [T::List(e), T::Int]) => (Builtin::Get, (**e).clone()),
        ("sum", [T::List(e)]) if matches!(**e, T::Int | T::Float) => (Builtin::Sum, (**e).clone()),
        ("keys", [T::Map(k, _)]) => (Builtin::Keys, T::List(k.clone())),
        ("values", [T::Map(_, v)]) => (Builtin::Values, T::List(v.clone())),
        ("is_some", [T::Optional(_) | T::None]) => (Builtin::IsSome, T::Bool),
        _ if any_error => return resolve_error_recovery(name),
        _ => return Err(fail(arity_matches(sig, args.len()))),
    };
    Ok(result)
}

/// With an argument that already failed, pick the function's usual result type so
/// checking goes on without a second report.
fn resolve_error_recovery(name: &str) -> Result<(Builtin, Type), CallError> {
    let ty = match name {
        "len" | "year" | "hour" | "minute" | "day_of_month" | "weekday" | "round" | "floor"
        | "ceil" | "to_int" | "parse_int" | "pow" | "to_days" | "to_hours" | "to_minutes"
        | "to_seconds" | "to_millis" | "to_micros" => Type::Int,
        "contains" | "starts_with" | "ends_with" | "is_some" => Type::Bool,
        "to_float" | "parse_float" | "sqrt" => Type::Float,
        "lower" | "upper" | "trim" | "concat" | "substring" | "replace" | "to_string" | "day"
        | "month" => Type::String,
        "days" | "hours" | "minutes" | "seconds" | "millis" | "parse_duration" => Type::Duration,
        "parse_time" | "start_of_day" => Type::Timestamp,
        _ => Type::Error,
    };
    Ok((Builtin::ToString, ty))
}

fn arity_matches(sig: &str, n: usize) -> bool {
    sig.split(" | ").any(|one| {
        let inner = one
            .split_once('(')
            .and_then(|(_, r)| r.split_once(')'))
            .map(|(args, _)| args)
            .unwrap_or("");
        if inner.contains("...") {
            n >= 1
        } else if inner.trim().is_empty() {
            n == 0
        } else {
            inner.split(',').count() == n
        }
    })
}

/// The documented signature(s) of a function, shown in diagnostics.
pub fn signature(name: &str) -> Option<&'static str> {
    Some(match name {
        "lower" => "lower(string) -> string",
        "upper" => "upper(string) -> string",
        "trim" => "trim(string) -> string",
        "len" => "len(string | list<T> | set<T> | map<K, V>) -> int",
        "contains" => {
            "contains(string, string) -> bool | contains(list<T> | set<T>, T) -> bool | contains(map<K, V>, K) -> bool"
        }
        "starts_with" => "starts_with(string, string) -> bool",
        "ends_with" => "ends_with(string, string) -> bool",
        "concat" => "concat(string, ...) -> string",
        "substring" => "substring(string, start: int, count: int) -> string",
        "replace" => "replace(string, from: string, to: string) -> string",
        "split" => "split(string, separator: string) -> list<string>",
        "to_string" => "to_string(T) -> string",
        "parse_int" => "parse_int(string) -> int",
        "parse_float" => "parse_float(string) -> float",
        "abs" => "abs(int) -> int | abs(float) -> float | abs(duration) -> duration",
        "min" => "min(T, T) -> T (T one of int, float, string, timestamp, duration)",
        "max" => "max(T, T) -> T (T one of int, float, string, timestamp, duration)",
        "round" => "round(float) -> int",
        "floor" => "floor(float) -> int",
        "ceil" => "ceil(float) -> int",
        "to_int" => "to_int(float) -> int",
        "to_float" => "to_float(int) -> float",
        "pow" => "pow(int, int) -> int",
        "sqrt" => "sqrt(float) -> float",
        "day" => "day(timestamp) -> string",
        "month" => "month(timestamp) -> string",
        "year" => "year(timestamp) -> int",
        "hour" => "hour(timestamp) -> int",
        "minute" => "minute(timestamp) -> int",
        "day_of_month" => "day_of_month(timestamp) -> int",
        "weekday" => "weekday(timestamp) -> int",
        "start_of_day" => "start_of_day(timestamp) -> timestamp",
        "days" => "days(int) -> duration",
        "hours" => "hours(int) -> duration",
        "minutes" => "minutes(int) -> duration",
        "seconds" => "seconds(int) -> duration",
        "millis" => "millis(int) -> duration",
        "to_days" => "to_days(duration) -> int (whole days, truncated toward zero)",
        "to_hours" => "to_hours(duration) -> int (whole hours, truncated toward zero)",
        "to_minutes" => "to_minutes(duration) -> int (whole minutes, truncated toward zero)",
        "to_seconds" => "to_seconds(duration) -> int (whole seconds, truncated toward zero)",
        "to_millis" => "to_millis(duration) -> int (whole milliseconds, truncated toward zero)",
        "to_micros" => "to_micros(duration) -> int (microseconds)",
        "parse_time" => "parse_time(string) -> timestamp",
        "parse_duration" => "parse_duration(string) -> duration",
        "first" => "first(list<T>) -> T?",
        "last" => "last(list<T>) -> T?",
        "get" => "get(list<T>, int) -> T",
        "sum" => "sum(list<int>) -> int | sum(list<float>) -> float",
        "keys" => "keys(map<K, V>) -> list<K>",
        "values" => "values(map<K, V>) -> list<V>",
        "is_some" => "is_some(T?) -> bool",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_has_a_signature() {
        for name in NAMES {
            assert!(signature(name).is_some(), "{name}");
        }
    }

    #[test]
    fn overloads_resolve_by_argument_type() {
        assert_eq!(
            resolve("abs", &[Type::Float]),
            Ok((Builtin::Abs, Type::Float))
        );
        assert_eq!(
            resolve("max", &[Type::Int, Type::Float]),
            Err(CallError::Types(
                "max(T, T) -> T (T one of int, float, string, timestamp, duration)"
            ))
        );
        assert!(matches!(resolve("lower", &[]), Err(CallError::Arity(_))));
        assert_eq!(resolve("nope", &[]), Err(CallError::Unknown));
    }
}
