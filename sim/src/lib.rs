//! Deterministic simulation of the FEP gateway on turmoil. Filled by the simulation issue.
