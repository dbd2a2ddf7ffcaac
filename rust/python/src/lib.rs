//! `lmobjectives._core`: PyO3 bindings over `lmobjectives-core`.
//!
//! Conversions only: every function extracts its inputs (strings become core enums through
//! their `parse(arg, s)`, rules between arguments live in the core), then runs the pure-Rust
//! kernel with the interpreter detached through `errors::detached` (the one way out of the
//! GIL; it also turns a panic into a `RuntimeError`), then moves the result buffers into
//! NumPy arrays.

mod args;
mod contrastive;
mod convert;
mod denoising;
mod errors;
mod masking;
mod mining;
mod packing;
mod padding;
mod pairs;
mod rl;

use pyo3::prelude::*;

/// Rust kernels of lmobjectives (internal; use the `lmobjectives` package).
#[pymodule]
mod _core {
    use super::*;

    #[pymodule_export]
    use crate::masking::{_length_samples, MlmMasker, check_recipe, masking_recipe, recipe_names};

    #[pymodule_export]
    use crate::padding::pad;

    #[pymodule_export]
    use crate::packing::pack;

    #[pymodule_export]
    use crate::pairs::{build_pair_index, pair_items, pair_mlm_batch, pair_rows};

    #[pymodule_export]
    use crate::contrastive::{TokenAugmenter, duplicate_groups};

    #[pymodule_export]
    use crate::denoising::{
        BartNoiser, SpanCorruptor, compute_input_and_target_lengths, denoiser_lengths,
    };

    #[pymodule_export]
    use crate::mining::{mining_isas, pair_scores, search_topk, select_negatives};

    #[pymodule_export]
    use crate::rl::{
        bleu, clip_masked, completion_mask, discounted_returns, gae, group_advantages_py,
        kl_estimate, rollout_plan, rollout_scatter, self_bleu, whiten,
    };

    /// Number of logical CPUs rayon would use for `num_threads=0`.
    #[pyfunction]
    fn available_threads() -> PyResult<usize> {
        crate::errors::guarded(move || Ok(lmobjectives_core::parallel::available_threads()))
    }

    /// Records a batch's sample keys in a collator's table of the keys made this epoch (a
    /// writable uint64 array whose length is a power of two); returns the first key already
    /// there, or None.
    #[pyfunction]
    fn note_keys(
        table: &Bound<'_, numpy::PyArray1<u64>>,
        keys: numpy::PyReadonlyArray1<'_, u64>,
    ) -> PyResult<Option<u64>> {
        crate::errors::guarded(move || {
            use numpy::PyArrayMethods;
            let mut table = table.try_readwrite().map_err(|_| {
                pyo3::exceptions::PyValueError::new_err("table: must be a writable array")
            })?;
            let slots = table.as_slice_mut().map_err(|_| {
                pyo3::exceptions::PyValueError::new_err("table: must be C-contiguous")
            })?;
            let keys: Vec<u64> = keys.as_array().iter().copied().collect();
            lmobjectives_core::rng::note_keys(slots, &keys).map_err(crate::errors::to_py)
        })
    }

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        m.add("STREAM_VERSION", lmobjectives_core::rng::STREAM_VERSION)?;
        m.add("MAX_ELEMENTS", lmobjectives_core::limits::MAX_ELEMENTS)?;
        m.add("MAX_VOCAB", lmobjectives_core::limits::MAX_VOCAB)?;
        // The exception classes live in `lmobjectives.errors`; `_core` re-exports them.
        use crate::errors::Class;
        for (c, name) in [
            (Class::Base, "LMObjectivesError"),
            (Class::InvalidArgument, "InvalidArgumentError"),
            (Class::TokenId, "TokenIdError"),
            (Class::Shape, "ShapeError"),
        ] {
            m.add(name, crate::errors::class(m.py(), c)?)?;
        }
        crate::errors::install_quiet_panic_hook();
        Ok(())
    }
}
