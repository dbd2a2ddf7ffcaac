//! Explicit limits on sizes derived from user input, checked before anything is allocated.
//!
//! Every output buffer a kernel allocates has at most [`MAX_ELEMENTS`] elements (2³⁰, i.e.
//! 8 GiB of int64 per array), and every size is computed with checked arithmetic: a batch
//! whose geometry (rows × width, a length rounded up to a multiple, a product of counts)
//! overflows or exceeds the limit is a [`CoreError::TooLarge`] naming the argument, never a
//! wrapped size, a "capacity overflow" panic or an aborted allocation.

use crate::{CoreError, Result};

/// The most elements one output array may hold: 2³⁰ (8 GiB of int64).
pub const MAX_ELEMENTS: usize = 1 << 30;

/// The longest row (or padded width) accepted: also 2³⁰.
pub const MAX_LENGTH: usize = MAX_ELEMENTS;

/// The largest vocabulary a kernel accepts (2²⁴ = 16,777,216 ids, 64 times the largest
/// tokenizer vocabularies in use): the MLM, denoising and contrastive kernels keep per-id
/// tables (specials, replacement pools, full stops), which this keeps under ~100 MB.
pub const MAX_VOCAB: u64 = 1 << 24;

fn too_large(arg: &str, what: impl std::fmt::Display) -> CoreError {
    CoreError::TooLarge {
        arg: arg.to_string(),
        message: format!("{what} is over the limit of {MAX_ELEMENTS} elements per output array"),
    }
}

/// `a × b`, checked against [`MAX_ELEMENTS`]; `arg` names what the product comes from.
pub fn elements(arg: &str, a: usize, b: usize) -> Result<usize> {
    match a.checked_mul(b) {
        Some(n) if n <= MAX_ELEMENTS => Ok(n),
        _ => Err(too_large(arg, format_args!("{a} × {b}"))),
    }
}

/// The product of `factors`, checked against [`MAX_ELEMENTS`].
pub fn product(arg: &str, factors: &[usize]) -> Result<usize> {
    let mut n: usize = 1;
    for &f in factors {
        n = n
            .checked_mul(f)
            .filter(|&n| n <= MAX_ELEMENTS)
            .ok_or_else(|| too_large(arg, format_args!("the product of {factors:?}")))?;
    }
    Ok(n)
}

/// A length (`max_length`, a padded width), checked against [`MAX_LENGTH`].
pub fn length(arg: &str, n: usize) -> Result<usize> {
    if n <= MAX_LENGTH {
        Ok(n)
    } else {
        Err(too_large(arg, format_args!("a length of {n}")))
    }
}

/// `n` rounded up to a multiple of `multiple` (0 or 1: unchanged), checked.
pub fn round_up(arg: &str, n: usize, multiple: usize) -> Result<usize> {
    if multiple <= 1 {
        return length(arg, n);
    }
    n.div_ceil(multiple)
        .checked_mul(multiple)
        .filter(|&w| w <= MAX_LENGTH)
        .ok_or_else(|| {
            too_large(
                arg,
                format_args!("{n} rounded up to a multiple of {multiple}"),
            )
        })
}

/// `a + b`, checked against [`MAX_ELEMENTS`].
pub fn sum(arg: &str, a: usize, b: usize) -> Result<usize> {
    a.checked_add(b)
        .filter(|&n| n <= MAX_ELEMENTS)
        .ok_or_else(|| too_large(arg, format_args!("{a} + {b}")))
}

/// A vocabulary size for per-token tables, checked against [`MAX_VOCAB`].
pub fn vocab(arg: &str, v: u64) -> Result<u64> {
    if v <= MAX_VOCAB {
        Ok(v)
    } else {
        Err(CoreError::TooLarge {
            arg: arg.to_string(),
            message: format!(
                "{v} is over the limit of {MAX_VOCAB} token ids (lmobjectives.errors.MAX_VOCAB)"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_sizes() {
        assert_eq!(elements("x", 4, 5).unwrap(), 20);
        assert!(matches!(
            elements("x", usize::MAX, 2),
            Err(CoreError::TooLarge { .. })
        ));
        assert!(elements("x", 1 << 16, 1 << 16).is_err());
        assert_eq!(round_up("p", 5, 4).unwrap(), 8);
        assert_eq!(round_up("p", 5, 0).unwrap(), 5);
        assert!(round_up("p", 5, 1 << 62).is_err());
        assert!(round_up("p", usize::MAX, 3).is_err());
        assert!(product("p", &[1 << 20, 1 << 20]).is_err());
        assert_eq!(product("p", &[3, 4, 5]).unwrap(), 60);
        assert!(sum("s", usize::MAX, 1).is_err());
        assert!(vocab("v", 1 << 40).is_err());
        assert!(vocab("v", (1 << 31) - 1).is_err());
        assert_eq!(vocab("v", 1 << 24).unwrap(), 1 << 24);
        assert!(length("m", 1 << 35).is_err());
    }
}
