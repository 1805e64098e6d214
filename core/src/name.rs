//! Checkpoint names and section ids, validated at the boundary.

use core::fmt;

/// The longest checkpoint name, in bytes: the SA Forum's extended names
/// (`saAisNameLend`), whose limit is a distinguished name's, 2048 bytes; a
/// classic `SaNameT` holds at most 256.
pub const CHECKPOINT_NAME_BYTES_MAX: usize = 2048;

/// The longest section id any checkpoint may declare (`SaCkptSectionIdT::idLen` is a `u16`).
pub const SECTION_ID_BYTES_MAX: usize = u16::MAX as usize;

/// A checkpoint name: 1 to [`CHECKPOINT_NAME_BYTES_MAX`] bytes, any bytes but NUL.
///
/// SA names are byte strings (`SaNameT`), not text; they are shown lossily as UTF-8.
///
/// ```
/// use ckpt_core::CheckpointName;
/// let name = CheckpointName::new("safCkpt=csa103").unwrap();
/// assert_eq!(name.as_bytes(), b"safCkpt=csa103");
/// assert!(CheckpointName::new("").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CheckpointName {
    bytes: Box<[u8]>,
}

/// Why a checkpoint name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    /// The name has no bytes.
    Empty,
    /// The name is longer than [`CHECKPOINT_NAME_BYTES_MAX`] bytes.
    TooLong {
        /// The length that was given.
        bytes: usize,
    },
    /// The name contains a NUL byte.
    ContainsNul,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty => f.write_str("checkpoint name is empty"),
            NameError::TooLong { bytes } => write!(
                f,
                "checkpoint name is {bytes} bytes long; the limit is {CHECKPOINT_NAME_BYTES_MAX}"
            ),
            NameError::ContainsNul => f.write_str("checkpoint name contains a NUL byte"),
        }
    }
}

impl core::error::Error for NameError {}

impl CheckpointName {
    /// Validates `name` and copies it.
    pub fn new(name: impl AsRef<[u8]>) -> Result<Self, NameError> {
        let bytes = name.as_ref();
        if bytes.is_empty() {
            return Err(NameError::Empty);
        }
        if bytes.len() > CHECKPOINT_NAME_BYTES_MAX {
            return Err(NameError::TooLong { bytes: bytes.len() });
        }
        if bytes.contains(&0) {
            return Err(NameError::ContainsNul);
        }
        Ok(Self {
            bytes: bytes.into(),
        })
    }

    /// The name's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl fmt::Display for CheckpointName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.bytes))
    }
}

impl fmt::Debug for CheckpointName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CheckpointName({:?})",
            String::from_utf8_lossy(&self.bytes)
        )
    }
}

/// An owned section id: arbitrary bytes, as returned by iteration or id generation.
///
/// Operations take ids as `&[u8]`; the empty id is `SA_CKPT_DEFAULT_SECTION_ID`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SectionId(pub Vec<u8>);

impl SectionId {
    /// The id's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// True for the default section's id (`SA_CKPT_DEFAULT_SECTION_ID`, zero bytes).
    pub fn is_default(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SectionId({})", self)
    }
}

/// Printable ids print as text, others as hex (`0x…`); the default id prints as `<default>`.
impl fmt::Display for SectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("<default>");
        }
        match core::str::from_utf8(&self.0) {
            Ok(s) if s.chars().all(|c| !c.is_control()) => f.write_str(s),
            _ => {
                f.write_str("0x")?;
                self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_bounded_and_nul_free() {
        assert_eq!(CheckpointName::new(""), Err(NameError::Empty));
        assert!(CheckpointName::new([b'a'; 2048]).is_ok());
        assert_eq!(
            CheckpointName::new([b'a'; 2049]),
            Err(NameError::TooLong { bytes: 2049 })
        );
        assert_eq!(CheckpointName::new(b"a\0b"), Err(NameError::ContainsNul));
    }

    #[test]
    fn ids_display_as_text_or_hex() {
        assert_eq!(SectionId(b"seq".to_vec()).to_string(), "seq");
        assert_eq!(SectionId(vec![0, 0, 0, 7]).to_string(), "0x00000007");
        assert_eq!(SectionId(vec![]).to_string(), "<default>");
    }
}
