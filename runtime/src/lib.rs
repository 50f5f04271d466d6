//! The DataMesh node.
