//! The real backend: a mio driver for the fep-core worker. Filled by the real-backend issue.
