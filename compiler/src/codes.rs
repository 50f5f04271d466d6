//! Every diagnostic code, declared once: its id, what kind of problem it is (the
//! letter), and its title, the first words of its page in the book's diagnostics
//! reference (`dmc explain CODE` prints the page). Diagnostics are built with these
//! constants, never with a string, so a code cannot be misspelt, and
//! `codes::tests` checks this table against the book.

use std::fmt;

/// A diagnostic code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Code {
    /// The code as written (`E0102`).
    pub id: &'static str,
    /// What it means, in a few words (`Unknown event type`).
    pub title: &'static str,
}

/// What a code's letter says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `E`: the program is rejected.
    Error,
    /// `W`: reported; the program still runs.
    Warning,
    /// `R`: a trap while folding; the projection faults at that event.
    Trap,
    /// `D`: a deploy limit of the node.
    Deploy,
    /// `L`: the node cannot fold a projection.
    Log,
    /// `M`: a mesh link and its peer disagree.
    Mesh,
    /// `T`: a test failed.
    Test,
}

impl Code {
    /// What kind of problem the code is.
    pub fn kind(self) -> Kind {
        match self.id.as_bytes().first() {
            Some(b'W') => Kind::Warning,
            Some(b'R') => Kind::Trap,
            Some(b'D') => Kind::Deploy,
            Some(b'L') => Kind::Log,
            Some(b'M') => Kind::Mesh,
            Some(b'T') => Kind::Test,
            _ => Kind::Error,
        }
    }

    /// Where the book explains it (relative to the book's root).
    pub fn page(self) -> String {
        format!("reference/diagnostics.md#{}", self.id.to_ascii_lowercase())
    }

    /// The code whose id is `id`.
    pub fn find(id: &str) -> Option<Code> {
        ALL.iter().copied().find(|c| c.id.eq_ignore_ascii_case(id))
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id)
    }
}

impl std::ops::Deref for Code {
    type Target = str;

    /// A code reads as its id.
    fn deref(&self) -> &str {
        self.id
    }
}

impl PartialEq<&str> for Code {
    fn eq(&self, other: &&str) -> bool {
        self.id == *other
    }
}

impl PartialEq<str> for Code {
    fn eq(&self, other: &str) -> bool {
        self.id == other
    }
}

macro_rules! codes {
    ($($id:ident: $title:literal,)*) => {
        $(
            #[doc = $title]
            pub const $id: Code = Code { id: stringify!($id), title: $title };
        )*
        /// Every code, in the book's order.
        pub const ALL: &[Code] = &[$($id),*];
    };
}

codes! {
    E0001: "Unexpected token",
    E0002: "Unexpected end of file",
    E0003: "Unexpected character",
    E0004: "Unterminated string literal",
    E0005: "Invalid escape",
    E0006: "Literal out of range",
    E0007: "Nested too deeply",
    E0101: "Declared twice",
    E0102: "Unknown event type",
    E0103: "Unknown type",
    E0104: "Invalid type",
    E0105: "Unknown field",
    E0106: "Unknown name",
    E0107: "Unknown function",
    E0108: "Envelope misuse",
    E0201: "Type mismatch",
    E0202: "Invalid operands",
    E0203: "Wrong arguments",
    E0204: "A constant cannot be computed",
    E0205: "Not assignable",
    E0206: "Invalid key type",
    E0207: "Inconsistent keys",
    E0208: "The projection's key is not a field of the event",
    E0209: "Missing fields, or `emit` outside an import rule",
    E0210: "Misused call or collection update",
    E0211: "Condition is not a bool",
    E0212: "State in an import rule",
    E0213: "Not a version",
    E0215: "Unknown peer in a test",
    E0216: "Two state blocks or two key clauses",
    E0217: "`meta` is reserved",
    E0218: "`delete` outside a projection",
    W0001: "Unused event",
    W0002: "State field never assigned",
    W0003: "Unused `let`",
    W0004: "Handler can never run",
    W0005: "Exported twice",
    W0006: "Projection without handlers",
    W0007: "Projection key never used",
    R0001: "Integer overflow",
    R0002: "Division by zero",
    R0003: "Invalid conversion",
    R0004: "Out of range",
    R0005: "Non-finite float",
    R0006: "An event does not match its declared type",
    R0007: "Limit exceeded",
    D0001: "The program is too large",
    D0002: "A handler is too large",
    L0001: "A log record the projection needs cannot be read",
    L0002: "A projection must be rebuilt but its documents cannot be dropped",
    M0001: "The block declares a type the peer does not export to this node",
    M0002: "The peer serves a declaration this node cannot read",
    M0003: "The peer sends a field the block does not declare",
    M0004: "A field has another type in the block than in the peer's declaration",
    M0005: "The block declares a field the peer does not send",
    M0006: "A peer event does not decode against the block",
    M0007: "The block requires a field the peer may leave out",
    T0001: "A test failed",
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_kinds_follow_the_letter() {
        let mut ids: Vec<&str> = ALL.iter().map(|c| c.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), ALL.len());
        assert_eq!(E0102.kind(), Kind::Error);
        assert_eq!(W0001.kind(), Kind::Warning);
        assert_eq!(R0002.kind(), Kind::Trap);
        assert_eq!(Code::find("e0102"), Some(E0102));
        assert_eq!(E0102.page(), "reference/diagnostics.md#e0102");
        assert_eq!(E0102, "E0102");
    }
}
