#![warn(missing_docs)]
//! The OCI vocabulary: digests, names, media types, manifests, platforms.
//! Pure functions only: no I/O, no dependency on the rest of Berth.

pub mod code;
pub mod digest;
pub mod filter;
pub mod glob;
pub mod manifest;
pub mod media;
pub mod name;
pub mod platform;

pub use code::Code;
pub use digest::{Algorithm, Digest, DigestError};
pub use manifest::{Descriptor, Kind, Summary};
pub use name::Reference;
pub use platform::Platform;
