//! Collection functions of the projection language over [`Value`]: sizes, membership,
//! mutation of lists, sets and maps, indexed access, sums, and map views.
//!
//! Invariant: the type checker guarantees each argument has the variant its static type
//! names, but nothing here relies on it: a mismatched variant yields a neutral answer
//! (0, `false`, no-op) or a [`Trap::InvalidConversion`], never a panic. Sets and maps
//! iterate in `Value` order, so every result is deterministic.

use std::collections::{BTreeMap, BTreeSet};

use crate::limits::check_room;
use crate::string::count_to_i64;
use crate::{Result, Trap, Value};

/// Returns the size of a collection: characters of a string, elements of a list or
/// set, entries of a map. Any other value has size 0.
///
/// # Examples
///
/// ```
/// use datamesh_stdlib::{collections::len, Value};
/// assert_eq!(len(&Value::List(vec![Value::Int(1), Value::Int(2)])), 2);
/// assert_eq!(len(&Value::str("héllo")), 5);
/// ```
pub fn len(v: &Value) -> i64 {
    match v {
        Value::Str(s) => crate::string::len(s),
        Value::List(items) => count_to_i64(items.len()),
        Value::Set(items) => count_to_i64(items.len()),
        Value::Map(entries) => count_to_i64(entries.len()),
        _ => 0,
    }
}

/// Returns whether `item` is in `coll`: a substring of a string, an element of a list
/// or set, or a key of a map. Any other combination is `false`.
///
/// # Examples
///
/// ```
/// use datamesh_stdlib::{collections::contains, Value};
/// let list = Value::List(vec![Value::Int(1), Value::Int(2)]);
/// assert!(contains(&list, &Value::Int(2)));
/// assert!(contains(&Value::str("shipped"), &Value::str("ship")));
/// ```
pub fn contains(coll: &Value, item: &Value) -> bool {
    match (coll, item) {
        (Value::Str(s), Value::Str(sub)) => s.contains(&**sub),
        (Value::List(items), _) => items.contains(item),
        (Value::Set(items), _) => items.contains(item),
        (Value::Map(entries), _) => entries.contains_key(item),
        _ => false,
    }
}

/// Appends a value to the end of a list.
///
/// # Errors
///
/// [`Trap::LimitExceeded`] when the list already holds
/// [`MAX_COLLECTION_LEN`](crate::limits::MAX_COLLECTION_LEN) elements (the list is
/// unchanged).
///
/// # Examples
///
/// ```
/// use datamesh_stdlib::{collections::push, Value};
/// let mut list = vec![Value::Int(1)];
/// assert!(push(&mut list, Value::Int(2)).is_ok());
/// assert_eq!(list, vec![Value::Int(1), Value::Int(2)]);
/// ```
pub fn push(list: &mut Vec<Value>, v: Value) -> Result<()> {
    check_room("list", list.len())?;
    list.push(v);
    Ok(())
}

/// Adds a value to a set; adding a value that is already present changes nothing.
/// Returns whether the value was added.
///
/// # Errors
///
/// [`Trap::LimitExceeded`] when the value is new and the set already holds
/// [`MAX_COLLECTION_LEN`](crate::limits::MAX_COLLECTION_LEN) elements (the set is
/// unchanged).
///
/// # Examples
///
/// ```
/// use std::collections::BTreeSet;
/// use datamesh_stdlib::{collections::insert, Value};
/// let mut set = BTreeSet::new();
/// assert_eq!(insert(&mut set, Value::str("a")), Ok(true));
/// assert_eq!(insert(&mut set, Value::str("a")), Ok(false));
/// assert_eq!(set.len(), 1);
/// ```
pub fn insert(set: &mut BTreeSet<Value>, v: Value) -> Result<bool> {
    if set.contains(&v) {
        return Ok(false);
    }
    check_room("set", set.len())?;
    Ok(set.insert(v))
}

/// Sets a map entry, returning the value it replaced (`None`: the key is new).
///
/// # Errors
///
/// [`Trap::LimitExceeded`] when the key is new and the map already holds
/// [`MAX_COLLECTION_LEN`](crate::limits::MAX_COLLECTION_LEN) entries (the map is
/// unchanged).
///
/// # Examples
///
/// ```
/// use std::collections::BTreeMap;
/// use datamesh_stdlib::{collections::set_entry, Value};
/// let mut map = BTreeMap::new();
/// assert_eq!(set_entry(&mut map, Value::str("k"), Value::Int(1)), Ok(None));
/// assert_eq!(set_entry(&mut map, Value::str("k"), Value::Int(2)), Ok(Some(Value::Int(1))));
/// ```
pub fn set_entry(map: &mut BTreeMap<Value, Value>, k: Value, v: Value) -> Result<Option<Value>> {
    if let Some(slot) = map.get_mut(&k) {
        return Ok(Some(std::mem::replace(slot, v)));
    }
    check_room("map", map.len())?;
    Ok(map.insert(k, v))
}

/// Removes `item` from a collection: the element of a set, the key (and its value) of a
/// map, or the first equal element of a list. Nothing happens when `item` is absent or
/// `coll` is not a collection.
///
/// # Examples
///
/// ```
/// use datamesh_stdlib::{collections::remove, Value};
/// let mut list = Value::List(vec![Value::Int(1), Value::Int(2), Value::Int(1)]);
/// remove(&mut list, &Value::Int(1));
/// assert_eq!(list, Value::List(vec![Value::Int(2), Value::Int(1)]));
/// ```
pub fn remove(coll: &mut Value, item: &Value) {
    match coll {
        Value::Set(items) => {
            items.remove(item);
        }
        Value::Map(entries) => {
            entries.remove(item);
        }
        Value::List(items) => {
            if let Some(index) = items.iter().position(|x| x == item) {
                items.remove(index);
            }
        }
        _ => {}
    }
}

/// Returns a copy of the list element at the 0-based `index`.
///
/// # Errors
///
/// [`Trap::OutOfRange`] naming the index and the list length when `index` is negative
/// or not less than the length.
///
/// # Examples
///
/// ```
/// use datamesh_stdlib::{collections::get, Value};
/// let list = vec![Value::Int(10), Value::Int(20)];
/// assert_eq!(get(&list, 1), Ok(Value::Int(20)));
/// assert!(get(&list, 2).is_err());
/// ```
pub fn get(list: &[Value], index: i64) -> Result<Value> {
    usize::try_from(index)
        .ok()
        .and_then(|i| list.get(i))
        .cloned()
        .ok_or_else(|| {
            Trap::OutOfRange(format!(
                "index {index} is out of range for a list of length {}",
                list.len()
            ))
        })
}

/// Returns a copy of the first element of a list, or `none` when the list is empty.
///
/// # Examples
///
/// ```
/// use datamesh_stdlib::{collections::first, Value};
/// assert_eq!(first(&[Value::Int(1), Value::Int(2)]), Value::Int(1));
/// assert_eq!(first(&[]), Value::None);
/// ```
pub fn first(list: &[Value]) -> Value {
    list.first().cloned().unwrap_or(Value::None)
}

/// Returns a copy of the last element of a list, or `none` when the list is empty.
///
/// # Examples
///
/// ```
/// use datamesh_stdlib::{collections::last, Value};
/// assert_eq!(last(&[Value::Int(1), Value::Int(2)]), Value::Int(2));
/// assert_eq!(last(&[]), Value::None);
/// ```
pub fn last(list: &[Value]) -> Value {
    list.last().cloned().unwrap_or(Value::None)
}

/// Builds the trap for an element of the wrong type in a sum.
fn wrong_element(function: &str, expected: &str, found: &Value) -> Trap {
    Trap::InvalidConversion(format!(
        "{function} expects a list of {expected}s, found an element of type {}",
        found.type_name()
    ))
}

/// Adds up a list of ints exactly, left to right; the empty list sums to 0.
///
/// # Errors
///
/// [`Trap::Overflow`]`("sum")` when a partial sum leaves the int range, and
/// [`Trap::InvalidConversion`] if an element is not an int.
///
/// # Examples
///
/// ```
/// use datamesh_stdlib::{collections::sum_int, Trap, Value};
/// assert_eq!(sum_int(&[Value::Int(2), Value::Int(3)]), Ok(5));
/// assert_eq!(sum_int(&[Value::Int(i64::MAX), Value::Int(1)]), Err(Trap::Overflow("sum")));
/// ```
pub fn sum_int(list: &[Value]) -> Result<i64> {
    list.iter().try_fold(0i64, |total, item| match item {
        Value::Int(i) => total.checked_add(*i).ok_or(Trap::Overflow("sum")),
        other => Err(wrong_element("sum_int", "int", other)),
    })
}

/// Adds up a list of floats left to right (the order is fixed so results are
/// reproducible); the empty list sums to `0.0`.
///
/// # Errors
///
/// [`Trap::NonFinite`]`("sum")` when a partial sum overflows to infinity, and
/// [`Trap::InvalidConversion`] if an element is not a float.
///
/// # Examples
///
/// ```
/// use datamesh_stdlib::{collections::sum_float, Trap, Value};
/// assert_eq!(sum_float(&[Value::Float(0.5), Value::Float(0.25)]), Ok(0.75));
/// assert_eq!(
///     sum_float(&[Value::Float(f64::MAX), Value::Float(f64::MAX)]),
///     Err(Trap::NonFinite("sum"))
/// );
/// ```
pub fn sum_float(list: &[Value]) -> Result<f64> {
    list.iter().try_fold(0.0f64, |total, item| match item {
        Value::Float(f) => {
            let next = total + f;
            if next.is_finite() {
                Ok(next)
            } else {
                Err(Trap::NonFinite("sum"))
            }
        }
        other => Err(wrong_element("sum_float", "float", other)),
    })
}

/// Returns the keys of a map, in key order.
///
/// # Examples
///
/// ```
/// use std::collections::BTreeMap;
/// use datamesh_stdlib::{collections::keys, Value};
/// let map = BTreeMap::from([(Value::str("b"), Value::Int(2)), (Value::str("a"), Value::Int(1))]);
/// assert_eq!(keys(&map), vec![Value::str("a"), Value::str("b")]);
/// ```
pub fn keys(map: &BTreeMap<Value, Value>) -> Vec<Value> {
    map.keys().cloned().collect()
}

/// Returns the values of a map, in the order of their keys.
///
/// # Examples
///
/// ```
/// use std::collections::BTreeMap;
/// use datamesh_stdlib::{collections::values, Value};
/// let map = BTreeMap::from([(Value::str("b"), Value::Int(2)), (Value::str("a"), Value::Int(1))]);
/// assert_eq!(values(&map), vec![Value::Int(1), Value::Int(2)]);
/// ```
pub fn values(map: &BTreeMap<Value, Value>) -> Vec<Value> {
    map.values().cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ints(xs: &[i64]) -> Vec<Value> {
        xs.iter().map(|&x| Value::Int(x)).collect()
    }

    fn sample_map() -> BTreeMap<Value, Value> {
        BTreeMap::from([
            (Value::str("b"), Value::Int(2)),
            (Value::str("a"), Value::Int(1)),
            (Value::str("c"), Value::None),
        ])
    }

    #[test]
    fn len_of_each_kind() {
        assert_eq!(len(&Value::str("")), 0);
        assert_eq!(len(&Value::str("é😀")), 2);
        assert_eq!(len(&Value::List(vec![])), 0);
        assert_eq!(len(&Value::List(ints(&[1, 1, 1]))), 3);
        assert_eq!(len(&Value::Set(ints(&[1, 1, 2]).into_iter().collect())), 2);
        assert_eq!(len(&Value::Map(sample_map())), 3);
        assert_eq!(len(&Value::Int(5)), 0);
        assert_eq!(len(&Value::None), 0);
    }

    #[test]
    fn contains_of_each_kind() {
        assert!(contains(&Value::str("abc"), &Value::str("")));
        assert!(contains(&Value::str("abc"), &Value::str("bc")));
        assert!(!contains(&Value::str("abc"), &Value::str("x")));
        assert!(!contains(&Value::str("1"), &Value::Int(1)));
        assert!(contains(&Value::List(ints(&[1, 2])), &Value::Int(2)));
        assert!(!contains(&Value::List(ints(&[1, 2])), &Value::Float(2.0)));
        assert!(!contains(&Value::List(vec![]), &Value::None));
        assert!(contains(
            &Value::Set(ints(&[3]).into_iter().collect()),
            &Value::Int(3)
        ));
        assert!(!contains(&Value::Set(BTreeSet::new()), &Value::Int(3)));
        assert!(contains(&Value::Map(sample_map()), &Value::str("a")));
        assert!(!contains(&Value::Map(sample_map()), &Value::Int(1))); // values are not keys
        assert!(!contains(&Value::Int(1), &Value::Int(1)));
        assert!(!contains(&Value::None, &Value::None));
    }

    #[test]
    fn push_and_insert() {
        let mut list = Vec::new();
        assert_eq!(push(&mut list, Value::Int(1)), Ok(()));
        assert_eq!(push(&mut list, Value::Int(1)), Ok(()));
        assert_eq!(list, ints(&[1, 1]));
        let mut set = BTreeSet::new();
        assert_eq!(insert(&mut set, Value::Int(2)), Ok(true));
        assert_eq!(insert(&mut set, Value::Int(1)), Ok(true));
        assert_eq!(insert(&mut set, Value::Int(2)), Ok(false));
        assert_eq!(set.into_iter().collect::<Vec<_>>(), ints(&[1, 2]));
    }

    #[test]
    fn full_collections_refuse_new_elements_but_not_existing_ones() {
        use crate::limits::MAX_COLLECTION_LEN;
        fn full<T>(kind: &str) -> Result<T> {
            Err(Trap::LimitExceeded(format!(
                "a {kind} cannot hold more than {MAX_COLLECTION_LEN} elements"
            )))
        }
        let mut list = vec![Value::None; MAX_COLLECTION_LEN - 1];
        assert_eq!(push(&mut list, Value::Int(1)), Ok(()));
        assert_eq!(push(&mut list, Value::Int(2)), full("list"));
        assert_eq!(list.len(), MAX_COLLECTION_LEN);

        let mut set: BTreeSet<Value> = (0..MAX_COLLECTION_LEN as i64).map(Value::Int).collect();
        assert_eq!(insert(&mut set, Value::Int(0)), Ok(false));
        assert_eq!(insert(&mut set, Value::Int(-1)), full("set"));
        assert_eq!(set.len(), MAX_COLLECTION_LEN);

        let mut map: BTreeMap<Value, Value> = (0..MAX_COLLECTION_LEN as i64)
            .map(|i| (Value::Int(i), Value::None))
            .collect();
        assert_eq!(
            set_entry(&mut map, Value::Int(5), Value::Int(5)),
            Ok(Some(Value::None))
        );
        assert_eq!(
            set_entry(&mut map, Value::Int(-1), Value::Int(5)),
            full("map")
        );
        assert_eq!(map.len(), MAX_COLLECTION_LEN);
    }

    #[test]
    fn remove_from_each_kind() {
        let mut list = Value::List(ints(&[1, 2, 1]));
        remove(&mut list, &Value::Int(1));
        assert_eq!(list, Value::List(ints(&[2, 1])));
        remove(&mut list, &Value::Int(9));
        assert_eq!(list, Value::List(ints(&[2, 1])));

        let mut set = Value::Set(ints(&[1, 2]).into_iter().collect());
        remove(&mut set, &Value::Int(1));
        assert_eq!(set, Value::Set(ints(&[2]).into_iter().collect()));
        remove(&mut set, &Value::Int(1));
        assert_eq!(set, Value::Set(ints(&[2]).into_iter().collect()));

        let mut map = Value::Map(sample_map());
        remove(&mut map, &Value::str("a"));
        remove(&mut map, &Value::Int(2)); // a value, not a key: no-op
        assert_eq!(
            map,
            Value::Map(BTreeMap::from([
                (Value::str("b"), Value::Int(2)),
                (Value::str("c"), Value::None),
            ]))
        );

        let mut scalar = Value::Int(1);
        remove(&mut scalar, &Value::Int(1));
        assert_eq!(scalar, Value::Int(1));
        let mut text = Value::str("abc");
        remove(&mut text, &Value::str("a"));
        assert_eq!(text, Value::str("abc"));
    }

    #[test]
    fn get_checks_bounds() {
        let list = ints(&[10, 20, 30]);
        assert_eq!(get(&list, 0), Ok(Value::Int(10)));
        assert_eq!(get(&list, 2), Ok(Value::Int(30)));
        assert_eq!(
            get(&list, 3),
            Err(Trap::OutOfRange(
                "index 3 is out of range for a list of length 3".to_string()
            ))
        );
        assert_eq!(
            get(&list, -1),
            Err(Trap::OutOfRange(
                "index -1 is out of range for a list of length 3".to_string()
            ))
        );
        assert!(matches!(get(&list, i64::MIN), Err(Trap::OutOfRange(_))));
        assert!(matches!(get(&list, i64::MAX), Err(Trap::OutOfRange(_))));
        assert!(matches!(get(&[], 0), Err(Trap::OutOfRange(_))));
    }

    #[test]
    fn first_and_last() {
        assert_eq!(first(&[]), Value::None);
        assert_eq!(last(&[]), Value::None);
        assert_eq!(first(&ints(&[7])), Value::Int(7));
        assert_eq!(last(&ints(&[7])), Value::Int(7));
        assert_eq!(first(&ints(&[1, 2, 3])), Value::Int(1));
        assert_eq!(last(&ints(&[1, 2, 3])), Value::Int(3));
    }

    #[test]
    fn integer_sums() {
        assert_eq!(sum_int(&[]), Ok(0));
        assert_eq!(sum_int(&ints(&[1, 2, 3])), Ok(6));
        assert_eq!(sum_int(&ints(&[i64::MAX, -1, 1])), Ok(i64::MAX));
        assert_eq!(sum_int(&ints(&[i64::MIN])), Ok(i64::MIN));
        assert_eq!(
            sum_int(&ints(&[i64::MAX, 1, -1])),
            Err(Trap::Overflow("sum"))
        );
        assert_eq!(sum_int(&ints(&[i64::MIN, -1])), Err(Trap::Overflow("sum")));
        assert_eq!(
            sum_int(&[Value::Int(1), Value::Float(1.0)]),
            Err(Trap::InvalidConversion(
                "sum_int expects a list of ints, found an element of type float".to_string()
            ))
        );
    }

    #[test]
    fn float_sums() {
        assert_eq!(sum_float(&[]), Ok(0.0));
        assert_eq!(
            sum_float(&[Value::Float(0.1), Value::Float(0.2), Value::Float(0.3)]),
            Ok(0.6000000000000001)
        );
        assert_eq!(
            sum_float(&[
                Value::Float(f64::MAX),
                Value::Float(f64::MAX),
                Value::Float(-f64::MAX)
            ]),
            Err(Trap::NonFinite("sum"))
        );
        assert_eq!(
            sum_float(&[Value::Float(f64::NAN)]),
            Err(Trap::NonFinite("sum"))
        );
        assert!(matches!(
            sum_float(&[Value::Int(1)]),
            Err(Trap::InvalidConversion(_))
        ));
    }

    #[test]
    fn map_views_are_in_key_order() {
        let map = sample_map();
        assert_eq!(
            keys(&map),
            vec![Value::str("a"), Value::str("b"), Value::str("c")]
        );
        assert_eq!(
            values(&map),
            vec![Value::Int(1), Value::Int(2), Value::None]
        );
        assert_eq!(keys(&BTreeMap::new()), Vec::<Value>::new());
        assert_eq!(values(&BTreeMap::new()), Vec::<Value>::new());
    }
}
