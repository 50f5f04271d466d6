//! The standard-library functions a program may call, each declared once.
//!
//! One [`builtins!`] table gives every function its [`Builtin`] variant, its name, its
//! documented signature and the result type the checker assumes when an argument
//! already failed. Everything else is an exhaustive `match` on [`Builtin`], so adding a
//! function is one line here, and the compiler then points at the two places that must
//! say what it means: its typing rule (`check::builtins::resolve`) and its behaviour
//! ([`call`]). Both engines run [`call`] (the JIT through a shim that passes
//! [`Builtin::index`]), so a function cannot mean two things.
//!
//! Invariants: `Builtin::ALL[b.index()] == b` for every builtin; names are unique;
//! [`call`] is only given arguments of the types the checker accepted for `f`.

use datamesh_stdlib::{Trap, Value, collections, math, string, time};

use crate::ir::Type;

/// Declares the builtins: `Variant "name" -> recovery type: "signature";`.
macro_rules! builtins {
    ($($variant:ident $name:literal -> $recovery:ident: $signature:literal;)*) => {
        /// A standard-library function (overloads are resolved by the checker from the
        /// static argument types; see [`call`]).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[allow(missing_docs)]
        pub enum Builtin {
            $($variant,)*
        }

        impl Builtin {
            /// Every builtin, in declaration order ([`Builtin::index`] indexes it).
            pub const ALL: &'static [Builtin] = &[$(Builtin::$variant,)*];

            /// The name a program calls it by.
            pub fn name(self) -> &'static str {
                match self {
                    $(Builtin::$variant => $name,)*
                }
            }

            /// Its documented signature(s), shown in diagnostics.
            pub fn signature(self) -> &'static str {
                match self {
                    $(Builtin::$variant => $signature,)*
                }
            }

            /// The builtin called `name`, if any.
            pub fn from_name(name: &str) -> Option<Builtin> {
                match name {
                    $($name => Some(Builtin::$variant),)*
                    _ => None,
                }
            }

            /// The result type the checker assumes for a call whose arguments already
            /// failed to check, so one mistake is reported once (`Error` when the
            /// result depends on the arguments).
            pub fn recovery_type(self) -> Type {
                match self {
                    $(Builtin::$variant => Type::$recovery,)*
                }
            }
        }
    };
}

builtins! {
    Lower "lower" -> String:
        "lower(string) -> string";
    Upper "upper" -> String:
        "upper(string) -> string";
    Trim "trim" -> String:
        "trim(string) -> string";
    Len "len" -> Int:
        "len(string | list<T> | set<T> | map<K, V>) -> int";
    Contains "contains" -> Bool:
        "contains(string, string) -> bool | contains(list<T> | set<T>, T) -> bool | contains(map<K, V>, K) -> bool";
    StartsWith "starts_with" -> Bool:
        "starts_with(string, string) -> bool";
    EndsWith "ends_with" -> Bool:
        "ends_with(string, string) -> bool";
    Concat "concat" -> String:
        "concat(string, ...) -> string";
    Substring "substring" -> String:
        "substring(string, start: int, count: int) -> string";
    Replace "replace" -> String:
        "replace(string, from: string, to: string) -> string";
    Split "split" -> Error:
        "split(string, separator: string) -> list<string>";
    ToString "to_string" -> String:
        "to_string(T) -> string";
    ParseInt "parse_int" -> Int:
        "parse_int(string) -> int";
    ParseFloat "parse_float" -> Float:
        "parse_float(string) -> float";
    Abs "abs" -> Error:
        "abs(int) -> int | abs(float) -> float | abs(duration) -> duration";
    Min "min" -> Error:
        "min(T, T) -> T (T one of int, float, string, timestamp, duration)";
    Max "max" -> Error:
        "max(T, T) -> T (T one of int, float, string, timestamp, duration)";
    Round "round" -> Int:
        "round(float) -> int";
    Floor "floor" -> Int:
        "floor(float) -> int";
    Ceil "ceil" -> Int:
        "ceil(float) -> int";
    ToInt "to_int" -> Int:
        "to_int(float) -> int";
    ToFloat "to_float" -> Float:
        "to_float(int) -> float";
    Pow "pow" -> Int:
        "pow(int, int) -> int";
    Sqrt "sqrt" -> Float:
        "sqrt(float) -> float";
    Day "day" -> String:
        "day(timestamp) -> string";
    Month "month" -> String:
        "month(timestamp) -> string";
    Year "year" -> Int:
        "year(timestamp) -> int";
    Hour "hour" -> Int:
        "hour(timestamp) -> int";
    Minute "minute" -> Int:
        "minute(timestamp) -> int";
    DayOfMonth "day_of_month" -> Int:
        "day_of_month(timestamp) -> int";
    Weekday "weekday" -> Int:
        "weekday(timestamp) -> int";
    StartOfDay "start_of_day" -> Timestamp:
        "start_of_day(timestamp) -> timestamp";
    Days "days" -> Duration:
        "days(int) -> duration";
    Hours "hours" -> Duration:
        "hours(int) -> duration";
    Minutes "minutes" -> Duration:
        "minutes(int) -> duration";
    Seconds "seconds" -> Duration:
        "seconds(int) -> duration";
    Millis "millis" -> Duration:
        "millis(int) -> duration";
    ToDays "to_days" -> Int:
        "to_days(duration) -> int (whole days, truncated toward zero)";
    ToHours "to_hours" -> Int:
        "to_hours(duration) -> int (whole hours, truncated toward zero)";
    ToMinutes "to_minutes" -> Int:
        "to_minutes(duration) -> int (whole minutes, truncated toward zero)";
    ToSeconds "to_seconds" -> Int:
        "to_seconds(duration) -> int (whole seconds, truncated toward zero)";
    ToMillis "to_millis" -> Int:
        "to_millis(duration) -> int (whole milliseconds, truncated toward zero)";
    ToMicros "to_micros" -> Int:
        "to_micros(duration) -> int (microseconds)";
    ParseTime "parse_time" -> Timestamp:
        "parse_time(string) -> timestamp";
    ParseDuration "parse_duration" -> Duration:
        "parse_duration(string) -> duration";
    First "first" -> Error:
        "first(list<T>) -> T?";
    Last "last" -> Error:
        "last(list<T>) -> T?";
    Get "get" -> Error:
        "get(list<T>, int) -> T";
    Sum "sum" -> Error:
        "sum(list<int>) -> int | sum(list<float>) -> float";
    Keys "keys" -> Error:
        "keys(map<K, V>) -> list<K>";
    Values "values" -> Error:
        "values(map<K, V>) -> list<V>";
    IsSome "is_some" -> Bool:
        "is_some(T?) -> bool";
}

impl Builtin {
    /// Its number in [`Builtin::ALL`], which compiled code passes to the runtime.
    pub fn index(self) -> u32 {
        self as u32
    }

    /// The builtin numbered `index`; `None` for a number no builtin has.
    pub fn from_index(index: u32) -> Option<Builtin> {
        usize::try_from(index)
            .ok()
            .and_then(|i| Builtin::ALL.get(i))
            .copied()
    }

    /// Every name a program may call, for "did you mean" suggestions.
    pub fn names() -> impl Iterator<Item = &'static str> {
        Builtin::ALL.iter().map(|b| b.name())
    }
}

fn as_str(v: &Value) -> &str {
    match v {
        Value::Str(s) => s,
        _ => "",
    }
}

fn as_int(v: &Value) -> i64 {
    match v {
        Value::Int(i) | Value::Timestamp(i) | Value::Duration(i) => *i,
        _ => 0,
    }
}

fn as_float(v: &Value) -> f64 {
    match v {
        Value::Float(f) => *f,
        _ => 0.0,
    }
}

fn strings(list: Vec<String>) -> Value {
    Value::List(list.into_iter().map(Value::str).collect())
}

/// Calls a standard-library function on evaluated arguments (`ret_float`: the call's
/// static result type is `float`, which picks `sum`'s overload). Both engines call this
/// one dispatch (the JIT through a shim), so a builtin cannot mean two things.
///
/// # Errors
/// The trap the function raised.
pub fn call(f: Builtin, args: &[&Value], ret_float: bool) -> Result<Value, Trap> {
    let none = Value::None;
    let a = args.first().copied().unwrap_or(&none);
    let b = args.get(1).copied().unwrap_or(&none);
    let c = args.get(2).copied().unwrap_or(&none);
    Ok(match f {
        Builtin::Lower => Value::str(string::lower(as_str(a))?),
        Builtin::Upper => Value::str(string::upper(as_str(a))?),
        Builtin::Trim => Value::str(string::trim(as_str(a))),
        Builtin::Len => Value::Int(collections::len(a)),
        Builtin::Contains => Value::Bool(collections::contains(a, b)),
        Builtin::StartsWith => Value::Bool(string::starts_with(as_str(a), as_str(b))),
        Builtin::EndsWith => Value::Bool(string::ends_with(as_str(a), as_str(b))),
        Builtin::Concat => {
            let parts: Vec<&str> = args.iter().map(|v| as_str(v)).collect();
            Value::str(string::concat(&parts)?)
        }
        Builtin::Substring => Value::str(string::substring(as_str(a), as_int(b), as_int(c))?),
        Builtin::Replace => Value::str(string::replace(as_str(a), as_str(b), as_str(c))?),
        Builtin::Split => strings(string::split(as_str(a), as_str(b))?),
        Builtin::ToString => Value::str(string::to_string_limited(a)?),
        Builtin::ParseInt => Value::Int(string::parse_int(as_str(a))?),
        Builtin::ParseFloat => Value::Float(string::parse_float(as_str(a))?),
        Builtin::Abs => match a {
            Value::Int(i) => Value::Int(math::abs_int(*i)?),
            Value::Float(x) => Value::Float(math::abs_float(*x)),
            Value::Duration(d) => Value::Duration(math::abs_int(*d)?),
            other => other.clone(),
        },
        Builtin::Min | Builtin::Max => {
            let pick_a = match (a, b) {
                (Value::Float(x), Value::Float(y)) => {
                    let m = if f == Builtin::Min {
                        math::min_float(*x, *y)
                    } else {
                        math::max_float(*x, *y)
                    };
                    return Ok(Value::Float(m));
                }
                _ => (a <= b) == (f == Builtin::Min),
            };
            if pick_a { a.clone() } else { b.clone() }
        }
        Builtin::Round => Value::Int(math::round(as_float(a))?),
        Builtin::Floor => Value::Int(math::floor(as_float(a))?),
        Builtin::Ceil => Value::Int(math::ceil(as_float(a))?),
        Builtin::ToInt => Value::Int(math::to_int(as_float(a))?),
        Builtin::ToFloat => Value::Float(math::to_float(as_int(a))),
        Builtin::Pow => Value::Int(math::pow_int(as_int(a), as_int(b))?),
        Builtin::Sqrt => Value::Float(math::sqrt(as_float(a))?),
        Builtin::Day => Value::str(time::day(as_int(a))),
        Builtin::Month => Value::str(time::month(as_int(a))),
        Builtin::Year => Value::Int(time::year(as_int(a))),
        Builtin::Hour => Value::Int(time::hour(as_int(a))),
        Builtin::Minute => Value::Int(time::minute(as_int(a))),
        Builtin::DayOfMonth => Value::Int(time::day_of_month(as_int(a))),
        Builtin::Weekday => Value::Int(time::weekday(as_int(a))),
        Builtin::StartOfDay => Value::Timestamp(time::start_of_day(as_int(a))),
        Builtin::Days => Value::Duration(time::days(as_int(a))?),
        Builtin::Hours => Value::Duration(time::hours(as_int(a))?),
        Builtin::Minutes => Value::Duration(time::minutes(as_int(a))?),
        Builtin::Seconds => Value::Duration(time::seconds(as_int(a))?),
        Builtin::Millis => Value::Duration(time::millis(as_int(a))?),
        Builtin::ToDays => Value::Int(time::to_days(as_int(a))),
        Builtin::ToHours => Value::Int(time::to_hours(as_int(a))),
        Builtin::ToMinutes => Value::Int(time::to_minutes(as_int(a))),
        Builtin::ToSeconds => Value::Int(time::to_seconds(as_int(a))),
        Builtin::ToMillis => Value::Int(time::to_millis(as_int(a))),
        Builtin::ToMicros => Value::Int(time::to_micros(as_int(a))),
        Builtin::ParseTime => Value::Timestamp(time::parse_rfc3339(as_str(a))?),
        Builtin::ParseDuration => Value::Duration(time::parse_duration(as_str(a))?),
        Builtin::First => match a {
            Value::List(l) => collections::first(l),
            _ => Value::None,
        },
        Builtin::Last => match a {
            Value::List(l) => collections::last(l),
            _ => Value::None,
        },
        Builtin::Get => match a {
            Value::List(l) => collections::get(l, as_int(b))?,
            _ => Value::None,
        },
        Builtin::Sum => match a {
            Value::List(l) if ret_float => Value::Float(collections::sum_float(l)?),
            Value::List(l) => Value::Int(collections::sum_int(l)?),
            _ => Value::Int(0),
        },
        Builtin::Keys => match a {
            Value::Map(m) => Value::List(collections::keys(m)),
            _ => Value::List(Vec::new()),
        },
        Builtin::Values => match a {
            Value::Map(m) => Value::List(collections::values(m)),
            _ => Value::List(Vec::new()),
        },
        Builtin::IsSome => Value::Bool(!matches!(a, Value::None)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_names_and_numbers_agree() {
        for (i, b) in Builtin::ALL.iter().enumerate() {
            assert_eq!(usize::try_from(b.index()).ok(), Some(i), "{b:?}");
            assert_eq!(Builtin::from_index(b.index()), Some(*b));
            assert_eq!(Builtin::from_name(b.name()), Some(*b));
            assert!(
                b.signature().starts_with(&format!("{}(", b.name())),
                "{b:?}: {}",
                b.signature()
            );
        }
        let count = u32::try_from(Builtin::ALL.len()).unwrap_or(u32::MAX);
        assert_eq!(Builtin::from_index(count), None);
        assert_eq!(Builtin::from_name("nope"), None);
    }

    #[test]
    fn every_builtin_is_documented_in_the_book() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../book/src/language/stdlib.md"
        );
        let page = std::fs::read_to_string(path).unwrap_or_default();
        assert!(!page.is_empty(), "cannot read {path}");
        for b in Builtin::ALL {
            assert!(
                page.contains(&format!("`{}`", b.name())),
                "{} is missing from the book's standard library page",
                b.name()
            );
            assert!(
                page.contains(&format!("{}(", b.name())),
                "the book's standard library page shows no signature of {}",
                b.name()
            );
        }
    }
}
