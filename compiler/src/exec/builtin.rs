//! The one dispatch of the standard-library functions: both engines call [`call`] (the
//! JIT through a shim that passes [`Builtin::index`]), so a function cannot mean two
//! things. The functions are declared in [`crate::ir::builtin`].
//!
//! Invariant: [`call`] is only given arguments of the types the checker accepted for
//! the builtin (`check::builtins::resolve`); on any other it returns a neutral value,
//! never panics.

use datamesh_stdlib::{Trap, Value, collections, math, string, time};

use crate::ir::Builtin;

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
