//! End-to-end tests of DataMesh live in `tests/tests/`; this library is empty.
