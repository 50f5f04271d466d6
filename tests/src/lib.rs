//! End-to-end tests of DataMesh live in `tests/tests/`; this crate's binary is the node
//! under test.
