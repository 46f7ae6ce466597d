//! Shared code of the FEP binaries.
