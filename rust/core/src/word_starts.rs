//! Which token ids begin a word: a per-vocabulary table, read once per token.
//!
//! The table is built outside the kernels (from a tokenizer's vocabulary: a WordPiece `##`
//! continuation is not a word start, a SentencePiece `▁` or byte-level BPE `Ġ` piece is;
//! special tokens always are) or given explicitly. Kept small and separate so that every
//! word-level objective (BART's text infilling here, whole-word masking) can share it.

use crate::{CoreError, Result};

/// `starts(id)`: does token `id` begin a word? Without a table every token does (subword
/// level).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WordStarts {
    table: Option<Vec<bool>>,
}

impl WordStarts {
    /// Every token starts a word.
    pub fn every_token() -> Self {
        Self { table: None }
    }

    /// A table with one entry per id of a `vocab_size` vocabulary.
    pub fn from_table(table: &[bool], vocab_size: usize) -> Result<Self> {
        if table.len() != vocab_size {
            return Err(CoreError::shape(
                "word_starts",
                format!(
                    "the table has {} entries but the vocabulary has {vocab_size} ids",
                    table.len()
                ),
            ));
        }
        Ok(Self {
            table: Some(table.to_vec()),
        })
    }

    /// Whether `id` (already checked to be in the vocabulary) begins a word.
    #[inline]
    pub fn starts(&self, id: u32) -> bool {
        self.table.as_ref().is_none_or(|t| t[id as usize])
    }

    /// The table, if there is one.
    pub fn table(&self) -> Option<&[bool]> {
        self.table.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_lookup() {
        let w = WordStarts::from_table(&[true, false, true], 3).unwrap();
        assert!(w.starts(0) && !w.starts(1) && w.starts(2));
        assert!(WordStarts::every_token().starts(12345));
        assert!(WordStarts::from_table(&[true], 3).is_err());
    }
}
