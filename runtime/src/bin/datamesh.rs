//! `datamesh`: the node binary.
fn main() {}
