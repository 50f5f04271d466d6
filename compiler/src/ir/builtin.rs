//! The standard-library functions a program may call, each declared once.
//!
//! One `builtins!` table gives every function its [`Builtin`] variant, its name, its
//! documented signature and the result type the checker assumes when an argument
//! already failed. Everything else is an exhaustive `match` on [`Builtin`], so adding a
//! function is one line here, and the compiler then points at the two places that must
//! say what it means: its typing rule ([`crate::check::resolve_builtin`]) and its
//! behaviour ([`crate::exec::builtin::call`], which both engines run).
//!
//! Invariants: `Builtin::ALL[b.index()] == b` for every builtin (the number compiled
//! code passes); names are unique.

use super::Type;

/// Declares the builtins: `Variant "name" -> recovery type: "signature";`.
macro_rules! builtins {
    ($($variant:ident $name:literal -> $recovery:ident: $signature:literal;)*) => {
        /// A standard-library function (overloads are resolved by the checker from the
        /// static argument types).
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
