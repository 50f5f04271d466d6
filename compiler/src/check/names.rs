//! "Did you mean" suggestions for misspelt names.
//!
//! Invariant: a suggestion is only made when it is close enough to be a likely typo
//! (edit distance at most a third of the name's length, and at least 1).

/// The closest candidate to `name`, if one is close enough to suggest.
pub fn suggest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(1);
    candidates
        .filter(|c| *c != name)
        .map(|c| (distance(&name.to_lowercase(), &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance over chars.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            let next = (row[j + 1] + 1).min(row[j] + 1).min(prev + cost);
            prev = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let names = ["balance", "owner", "tx_count"];
        assert_eq!(suggest("balnce", names.iter().copied()), Some("balance"));
        assert_eq!(suggest("ownr", names.iter().copied()), Some("owner"));
        assert_eq!(suggest("zzz", names.iter().copied()), None);
    }
}
