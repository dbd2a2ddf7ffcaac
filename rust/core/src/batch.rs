//! Batches of token rows: ragged input (CSR), padding geometry, and the integer types that
//! cross the boundary.

use crate::{CoreError, Result};

/// An integer type token ids can be read from (read in place from NumPy, any width).
pub trait TokenId: Copy + Send + Sync + 'static {
    /// The value as `i64`; values that do not fit map to `i64::MAX` (always out of range).
    fn to_i64(self) -> i64;
}

macro_rules! token_id_lossless {
    ($($t:ty),*) => {$(
        impl TokenId for $t {
            #[inline]
            fn to_i64(self) -> i64 { i64::from(self) }
        }
    )*};
}
token_id_lossless!(i8, i16, i32, i64, u8, u16, u32);

impl TokenId for u64 {
    #[inline]
    fn to_i64(self) -> i64 {
        i64::try_from(self).unwrap_or(i64::MAX)
    }
}

/// An integer type batches are written as (`int64` default, `int32` where bandwidth matters).
pub trait OutId: Copy + Send + Sync + Default + 'static {
    /// The largest value the type holds.
    const MAX: i64;
    /// The smallest value the type holds.
    const MIN: i64;
    /// The dtype's name in messages.
    const NAME: &'static str;
    /// Converts a value already known to fit (ids < vocab_size ≤ `i32::MAX`, -100, 0/1; values
    /// copied from the input are checked first with [`check_values`]).
    fn from_i64(v: i64) -> Self;

    /// The recycled output buffers of this type (see [`BufferPool`]).
    fn pool() -> &'static BufferPool<Self>;
}

/// Checks that every value of `rows` lies in `[lo, hi]`; the first that does not is an
/// error naming `arg`, the row and the position, and saying `why` the range is what it is.
/// (A `uint64` value ≥ 2⁶³ reads as `i64::MAX`, so `hi < i64::MAX` rejects it too.)
pub fn check_values<T: TokenId>(
    arg: &str,
    rows: &Ragged<'_, T>,
    lo: i64,
    hi: i64,
    why: &str,
) -> Result<()> {
    if rows.values.iter().all(|&x| (lo..=hi).contains(&x.to_i64())) {
        return Ok(());
    }
    for r in 0..rows.rows() {
        if let Some(t) = rows
            .row(r)
            .iter()
            .position(|&x| !(lo..=hi).contains(&x.to_i64()))
        {
            let v = rows.row(r)[t].to_i64();
            let shown = if v == i64::MAX {
                "≥ 2**63 - 1".to_string()
            } else {
                v.to_string()
            };
            return Err(CoreError::invalid(
                format!("{arg}[{r}][{t}]"),
                format!("value {shown} is outside [{lo}, {hi}] ({why})"),
            ));
        }
    }
    Ok(())
}

/// Checks that the values of `rows` fit the output type `O` (never wrap).
pub fn check_fits<T: TokenId, O: OutId>(arg: &str, rows: &Ragged<'_, T>) -> Result<()> {
    check_values(
        arg,
        rows,
        O::MIN,
        O::MAX.min(i64::MAX - 1),
        &format!("dtype={:?} holds them", O::NAME),
    )
}

/// Checks that a scalar written into the output fits `O`.
pub fn check_scalar_fits<O: OutId>(arg: &str, v: i64) -> Result<()> {
    if (O::MIN..=O::MAX).contains(&v) {
        Ok(())
    } else {
        Err(CoreError::invalid(
            arg,
            format!("{v} does not fit in dtype={:?}", O::NAME),
        ))
    }
}

impl OutId for i64 {
    const MAX: i64 = i64::MAX;
    const MIN: i64 = i64::MIN;
    const NAME: &'static str = "int64";
    #[inline]
    fn from_i64(v: i64) -> Self {
        v
    }

    fn pool() -> &'static BufferPool<Self> {
        static POOL: BufferPool<i64> = BufferPool::new();
        &POOL
    }
}

impl OutId for i32 {
    const MAX: i64 = i32::MAX as i64;
    const MIN: i64 = i32::MIN as i64;
    const NAME: &'static str = "int32";
    #[inline]
    fn from_i64(v: i64) -> Self {
        // Callers guarantee the range (vocab sizes are checked against i32::MAX at config time).
        v as i32
    }

    fn pool() -> &'static BufferPool<Self> {
        static POOL: BufferPool<i32> = BufferPool::new();
        &POOL
    }
}

/// Buffers smaller than this are not recycled (the allocator's own bins serve them well).
pub const POOL_MIN_BYTES: usize = 64 << 10;
/// At most this many buffers wait in one pool …
pub const POOL_MAX_BUFFERS: usize = 32;
/// … holding at most this many bytes.
pub const POOL_MAX_BYTES: usize = 64 << 20;

/// Output buffers given back when their NumPy array is freed, handed out again to the next
/// batch of a similar size.
///
/// A batch's outputs are large (a 1024 × 128 int64 array is 1 MiB), and a process's
/// allocator returns freed memory of that size to the operating system — glibc unmaps it or
/// trims its heap — so every new batch would otherwise write to fresh pages, each a page
/// fault (measured: about 40 % of an NSP + masking pass). Recycled buffers are already
/// mapped. The pool is bounded ([`POOL_MAX_BUFFERS`], [`POOL_MAX_BYTES`]), only takes
/// buffers of [`POOL_MIN_BYTES`] or more, and never blocks: when its lock is taken (another
/// thread, or a lock inherited across `fork()`), buffers are allocated and freed as usual.
/// Contents are never read: a taken buffer is empty (length 0).
#[derive(Debug)]
pub struct BufferPool<O> {
    free: std::sync::Mutex<(Vec<Vec<O>>, usize)>,
}

impl<O> Default for BufferPool<O> {
    fn default() -> Self {
        Self::new()
    }
}

impl<O> BufferPool<O> {
    pub const fn new() -> Self {
        Self {
            free: std::sync::Mutex::new((Vec::new(), 0)),
        }
    }

    fn bytes(capacity: usize) -> usize {
        capacity.saturating_mul(std::mem::size_of::<O>())
    }

    /// An empty buffer with room for `n` values: the smallest waiting one that holds `n`
    /// without being more than twice as large, else a new one.
    pub fn take(&self, n: usize) -> Vec<O> {
        let mut buf = self.take_any(n);
        buf.clear();
        buf
    }

    /// A buffer of exactly `n` values whose contents are unspecified — a recycled buffer keeps
    /// what it held, only growth is zeroed — for callers that overwrite every value (no
    /// memset of the whole buffer up front).
    pub fn take_len(&self, n: usize) -> Vec<O>
    where
        O: Clone + Default,
    {
        let mut buf = self.take_any(n);
        buf.resize(n, O::default());
        buf
    }

    /// The smallest waiting buffer that holds `n` values without being more than twice as
    /// large, as it was given back (contents kept), else a new empty one.
    fn take_any(&self, n: usize) -> Vec<O> {
        if Self::bytes(n) >= POOL_MIN_BYTES
            && let Ok(mut guard) = self.free.try_lock()
        {
            let (bufs, total) = &mut *guard;
            let best = bufs
                .iter()
                .enumerate()
                .filter(|(_, b)| b.capacity() >= n && b.capacity() / 2 <= n)
                .min_by_key(|(_, b)| b.capacity())
                .map(|(i, _)| i);
            if let Some(i) = best {
                let buf = bufs.swap_remove(i);
                *total -= Self::bytes(buf.capacity());
                return buf;
            }
        }
        Vec::with_capacity(n)
    }

    /// Keeps `buf` for a later [`BufferPool::take`] (or frees it when the pool is full or
    /// the buffer small).
    pub fn give(&self, buf: Vec<O>) {
        let bytes = Self::bytes(buf.capacity());
        if bytes < POOL_MIN_BYTES {
            return;
        }
        let Ok(mut guard) = self.free.try_lock() else {
            return;
        };
        let (bufs, total) = &mut *guard;
        if bufs.len() < POOL_MAX_BUFFERS && *total + bytes <= POOL_MAX_BYTES {
            *total += bytes;
            bufs.push(buf);
        }
    }

    /// Buffers waiting and the bytes they hold.
    pub fn stats(&self) -> (usize, usize) {
        self.free
            .try_lock()
            .map(|g| (g.0.len(), g.1))
            .unwrap_or((0, 0))
    }
}

/// Rows in compressed-sparse-row layout: row `r` is `values[offsets[r]..offsets[r + 1]]`.
/// A dense `[rows, cols]` array is the special case `offsets = [0, cols, 2·cols, …]`.
#[derive(Debug, Clone, Copy)]
pub struct Ragged<'a, T> {
    pub values: &'a [T],
    pub offsets: &'a [usize],
}

impl<'a, T> Ragged<'a, T> {
    /// Validates the CSR invariants: `offsets[0] == 0`, non-decreasing, last == `values.len()`.
    pub fn new(arg: &str, values: &'a [T], offsets: &'a [usize]) -> Result<Self> {
        if offsets.is_empty() {
            return Err(CoreError::shape(
                arg,
                "offsets must have at least one entry",
            ));
        }
        if offsets[0] != 0 {
            return Err(CoreError::shape(arg, "offsets must start at 0"));
        }
        if let Some(i) = offsets.windows(2).position(|w| w[1] < w[0]) {
            return Err(CoreError::shape(
                arg,
                format!(
                    "offsets must be non-decreasing (offsets[{}] > offsets[{}])",
                    i,
                    i + 1
                ),
            ));
        }
        let last = offsets[offsets.len() - 1];
        if last != values.len() {
            return Err(CoreError::shape(
                arg,
                format!(
                    "offsets end at {last} but there are {} values",
                    values.len()
                ),
            ));
        }
        Ok(Self { values, offsets })
    }

    #[inline]
    pub fn rows(&self) -> usize {
        self.offsets.len() - 1
    }

    #[inline]
    pub fn row(&self, r: usize) -> &'a [T] {
        &self.values[self.offsets[r]..self.offsets[r + 1]]
    }

    #[inline]
    pub fn row_len(&self, r: usize) -> usize {
        self.offsets[r + 1] - self.offsets[r]
    }

    /// Checks that `other` has exactly the same row lengths (an aligned per-token array).
    pub fn check_aligned<U>(&self, arg: &str, other: &Ragged<'_, U>) -> Result<()> {
        if other.rows() != self.rows() {
            return Err(CoreError::shape(
                arg,
                format!(
                    "has {} rows but input_ids has {}",
                    other.rows(),
                    self.rows()
                ),
            ));
        }
        for r in 0..self.rows() {
            if other.row_len(r) != self.row_len(r) {
                return Err(CoreError::shape(
                    arg,
                    format!(
                        "row {r} has length {} but input_ids row {r} has length {}",
                        other.row_len(r),
                        self.row_len(r)
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Offsets of a dense `[rows, cols]` array seen as CSR.
pub fn dense_offsets(rows: usize, cols: usize) -> Vec<usize> {
    (0..=rows).map(|r| r * cols).collect()
}

/// Offsets given as signed integers (as NumPy holds them) as `usize`; a negative one is an
/// error naming `arg`.
pub fn offsets_from_i64(arg: &str, offsets: &[i64]) -> Result<Vec<usize>> {
    offsets
        .iter()
        .map(|&o| {
            usize::try_from(o).map_err(|_| CoreError::invalid(arg, format!("negative offset {o}")))
        })
        .collect()
}

/// The integer type a batch is written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    I64,
    I32,
}

impl Dtype {
    pub fn parse(arg: &str, s: &str) -> Result<Self> {
        match s {
            "int64" => Ok(Dtype::I64),
            "int32" => Ok(Dtype::I32),
            other => Err(CoreError::invalid(
                arg,
                format!("must be 'int64' or 'int32', got {other:?}"),
            )),
        }
    }

    /// Checks that `value` (given as `arg`, e.g. a padding value) fits this type.
    pub fn check_fits(self, arg: &str, value: i64) -> Result<()> {
        if self == Dtype::I32 && i32::try_from(value).is_err() {
            return Err(CoreError::invalid(
                arg,
                format!("{value} does not fit in int32"),
            ));
        }
        Ok(())
    }
}

/// Which end of a row receives the padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Right,
    Left,
}

impl Side {
    pub fn parse(arg: &str, s: &str) -> Result<Self> {
        match s {
            "right" => Ok(Side::Right),
            "left" => Ok(Side::Left),
            other => Err(CoreError::invalid(
                arg,
                format!("must be 'right' or 'left', got {other:?}"),
            )),
        }
    }
}

/// How a batch of rows becomes a rectangle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PadSpec {
    /// `Some(n)`: rows longer than `n` are an error, or are cut to `n` when `truncation`.
    pub max_length: Option<usize>,
    /// Cut rows longer than `max_length` to their first `max_length` tokens.
    pub truncation: bool,
    /// Pad to `max_length` (true) rather than to the longest row (false).
    pub pad_to_max_length: bool,
    /// Round the padded length up to a multiple of this (1 = no rounding).
    pub multiple_of: usize,
    pub side: Side,
}

impl Default for PadSpec {
    fn default() -> Self {
        Self {
            max_length: None,
            truncation: false,
            pad_to_max_length: false,
            multiple_of: 1,
            side: Side::Right,
        }
    }
}

impl PadSpec {
    pub fn validate(&self) -> Result<()> {
        if self.multiple_of == 0 {
            return Err(CoreError::invalid(
                "pad_to_multiple_of",
                "must be a positive integer",
            ));
        }
        if self.max_length == Some(0) {
            return Err(CoreError::invalid(
                "max_length",
                "must be a positive integer",
            ));
        }
        if let Some(m) = self.max_length {
            crate::limits::length("max_length", m)?;
        }
        crate::limits::length("pad_to_multiple_of", self.multiple_of)?;
        if (self.truncation || self.pad_to_max_length) && self.max_length.is_none() {
            let what = if self.truncation {
                "truncation=True"
            } else {
                "padding='max_length'"
            };
            return Err(CoreError::invalid(
                "max_length",
                format!("{what} needs max_length"),
            ));
        }
        Ok(())
    }

    /// The number of tokens of a row of `len` that is kept.
    #[inline]
    pub fn kept(&self, len: usize) -> usize {
        match self.max_length {
            Some(m) if self.truncation => len.min(m),
            _ => len,
        }
    }

    /// Validates the row lengths and returns the padded width of the batch.
    pub fn width<T>(&self, arg: &str, rows: &Ragged<'_, T>) -> Result<usize> {
        self.validate()?;
        if rows.rows() == 0 {
            return Err(CoreError::invalid(arg, "the batch is empty"));
        }
        let mut longest = 0;
        for r in 0..rows.rows() {
            let n = rows.row_len(r);
            if n == 0 {
                return Err(CoreError::invalid(
                    arg,
                    format!("row {r} is empty (zero-length rows cannot be masked or padded)"),
                ));
            }
            if let Some(m) = self.max_length
                && n > m
                && !self.truncation
            {
                return Err(CoreError::invalid(
                    arg,
                    format!(
                        "row {r} has {n} tokens, more than max_length={m}; pass truncation=True to cut it"
                    ),
                ));
            }
            longest = longest.max(self.kept(n));
        }
        let base = match self.max_length {
            Some(m) if self.pad_to_max_length => m,
            _ => longest,
        };
        let width = crate::limits::round_up(
            if self.pad_to_max_length {
                "max_length"
            } else {
                arg
            },
            base,
            self.multiple_of,
        )
        .map_err(|e| self.blame(e))?;
        crate::limits::elements(arg, rows.rows(), width)?;
        Ok(width)
    }

    /// A limit error on the padded width, blamed on `pad_to_multiple_of` when rounding up to
    /// it is what went over.
    fn blame(&self, e: CoreError) -> CoreError {
        match e {
            CoreError::TooLarge { message, .. } if self.multiple_of > 1 => CoreError::TooLarge {
                arg: "pad_to_multiple_of".into(),
                message,
            },
            e => e,
        }
    }

    /// Where the kept tokens of a row of `kept` tokens start inside a row of `width`.
    #[inline]
    pub fn start(&self, kept: usize, width: usize) -> usize {
        match self.side {
            Side::Right => 0,
            Side::Left => width - kept,
        }
    }
}

/// Builds `K` row-major `rows × width` buffers, calling `fill(r, [row r of each buffer])`
/// for every row, on `threads` threads. Each row is zero-filled when `fill` sees it, so a
/// kernel writes only what differs from zero.
///
/// Either way the zeroing of a row happens in cache just before the kernel writes it, so each
/// output byte goes to memory once: on one thread the buffers grow row by row; on several,
/// recycled buffers are taken as they are (no serial memset of the whole batch) and each
/// worker zeroes its rows.
pub fn fill_rows<O, F, const K: usize>(
    threads: usize,
    rows: usize,
    width: usize,
    fill: F,
) -> Result<[Vec<O>; K]>
where
    O: OutId,
    F: Fn(usize, [&mut [O]; K]) + Sync + Send,
{
    let n = rows * width;
    if crate::parallel::resolve_threads(threads) <= 1 || rows <= 1 || width == 0 {
        let mut bufs: [Vec<O>; K] = std::array::from_fn(|_| O::pool().take(n));
        for r in 0..rows {
            let base = r * width;
            for b in bufs.iter_mut() {
                b.resize(base + width, O::default());
            }
            fill(r, bufs.each_mut().map(|b| &mut b[base..]));
        }
        return Ok(bufs);
    }
    let mut bufs: [Vec<O>; K] = std::array::from_fn(|_| O::pool().take_len(n));
    {
        let mut chunks = bufs.each_mut().map(|b| b.chunks_mut(width));
        let mut per_row: Vec<[&mut [O]; K]> = Vec::with_capacity(rows);
        for _ in 0..rows {
            per_row.push(chunks.each_mut().map(|c| c.next().unwrap_or_default()));
        }
        crate::parallel::for_each_mut(threads, &mut per_row, |r, row| {
            let mut row = std::mem::replace(row, std::array::from_fn(|_| Default::default()));
            for b in row.iter_mut() {
                b.fill(O::default());
            }
            fill(r, row);
        })?;
    }
    Ok(bufs)
}

/// Like [`fill_rows`], but into caller-provided buffers (e.g. shared or pinned memory), each
/// `rows × width` long. Every row is zeroed just before `fill` sees it.
pub fn fill_rows_into<O, F, const K: usize>(
    threads: usize,
    width: usize,
    bufs: [&mut [O]; K],
    fill: F,
) -> Result<()>
where
    O: Copy + Default + Send + Sync,
    F: Fn(usize, [&mut [O]; K]) + Sync + Send,
{
    let n = bufs.first().map_or(0, |b| b.len());
    if width == 0 || !n.is_multiple_of(width) || bufs.iter().any(|b| b.len() != n) {
        return Err(CoreError::shape(
            "out",
            format!("output buffers must all hold rows × {width} values"),
        ));
    }
    let rows = n / width;
    let mut chunks = bufs.map(|b| b.chunks_mut(width));
    let mut per_row: Vec<[&mut [O]; K]> = Vec::with_capacity(rows);
    for _ in 0..rows {
        per_row.push(chunks.each_mut().map(|c| c.next().unwrap_or_default()));
    }
    crate::parallel::for_each_mut(threads, &mut per_row, |r, row| {
        let mut row = std::mem::replace(row, std::array::from_fn(|_| Default::default()));
        for b in row.iter_mut() {
            b.fill(O::default());
        }
        fill(r, row);
    })
}

/// Pads aligned per-token values (e.g. `token_type_ids`) into a `rows × width` rectangle.
pub fn pad<T: TokenId, O: OutId>(
    arg: &str,
    rows: &Ragged<'_, T>,
    spec: &PadSpec,
    pad_value: i64,
) -> Result<(usize, Vec<O>)> {
    let width = spec.width(arg, rows)?;
    let pad = O::from_i64(pad_value);
    let [out] = fill_rows(1, rows.rows(), width, |r, [dst]| {
        let src = rows.row(r);
        let kept = spec.kept(src.len());
        let start = spec.start(kept, width);
        dst[..start].fill(pad);
        dst[start + kept..].fill(pad);
        for (d, &s) in dst[start..start + kept].iter_mut().zip(&src[..kept]) {
            *d = O::from_i64(s.to_i64());
        }
    })?;
    Ok((width, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ragged_validation() {
        let v = [1i64, 2, 3];
        assert!(Ragged::new("x", &v, &[0, 1, 3]).is_ok());
        assert!(Ragged::new("x", &v, &[1, 3]).is_err());
        assert!(Ragged::new("x", &v, &[0, 2, 1, 3]).is_err());
        assert!(Ragged::new("x", &v, &[0, 2]).is_err());
        assert!(Ragged::new("x", &v, &[]).is_err());
    }

    #[test]
    fn width_rounding_and_errors() {
        let v = [1i64; 13];
        let r = Ragged::new("x", &v, &[0, 13]).unwrap();
        let mut s = PadSpec {
            multiple_of: 8,
            ..PadSpec::default()
        };
        assert_eq!(s.width("x", &r).unwrap(), 16);
        s.multiple_of = 13;
        assert_eq!(s.width("x", &r).unwrap(), 13);
        s.max_length = Some(10);
        assert!(s.width("x", &r).is_err());
        s.truncation = true;
        s.multiple_of = 1;
        assert_eq!(s.width("x", &r).unwrap(), 10);
        s.pad_to_max_length = true;
        s.max_length = Some(20);
        assert_eq!(s.width("x", &r).unwrap(), 20);
        let empty = Ragged::new("x", &v[..0], &[0, 0]).unwrap();
        assert!(PadSpec::default().width("x", &empty).is_err());
        let none = Ragged::new("x", &v[..0], &[0]).unwrap();
        assert!(PadSpec::default().width("x", &none).is_err());
    }

    #[test]
    fn pad_left_and_right() {
        let v = [1i64, 2, 3, 4, 5];
        let r = Ragged::new("x", &v, &[0, 2, 5]).unwrap();
        let (w, out) = pad::<i64, i64>("x", &r, &PadSpec::default(), 0).unwrap();
        assert_eq!(w, 3);
        assert_eq!(out, [1, 2, 0, 3, 4, 5]);
        let left = PadSpec {
            side: Side::Left,
            ..PadSpec::default()
        };
        let (_, out) = pad::<i64, i32>("x", &r, &left, -1).unwrap();
        assert_eq!(out, [-1, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn pool_recycles_large_buffers_and_bounds_itself() {
        let pool = BufferPool::<i64>::new();
        let n = POOL_MIN_BYTES / 2; // 4 × the smallest recycled size, in i64s
        let mut a = pool.take(n);
        a.extend((0..n as i64).map(|x| x + 1));
        let ptr = a.as_ptr();
        pool.give(a);
        assert_eq!(pool.stats(), (1, n * 8));
        // Too small a request for the waiting buffer (it would be over twice as large).
        let small = pool.take(n / 4);
        assert_ne!(small.as_ptr(), ptr);
        let b = pool.take(n - 1);
        assert_eq!(
            (b.as_ptr(), b.len()),
            (ptr, 0),
            "the same memory, handed out empty"
        );
        assert_eq!(pool.stats(), (0, 0));
        pool.give(vec![0i64; 16]); // small: freed, not kept
        assert_eq!(pool.stats(), (0, 0));
        for _ in 0..POOL_MAX_BUFFERS + 5 {
            pool.give(Vec::with_capacity(n));
        }
        assert_eq!(pool.stats().0, POOL_MAX_BUFFERS);
        pool.give(Vec::with_capacity(POOL_MAX_BYTES));
        assert!(pool.stats().1 <= POOL_MAX_BYTES);
    }

    #[test]
    fn fill_rows_is_the_same_on_any_thread_count() {
        let run = |threads| {
            fill_rows::<i64, _, 2>(threads, 100, 7, |r, [a, b]| {
                assert!(
                    a.iter().chain(b.iter()).all(|&x| x == 0),
                    "rows start zeroed"
                );
                a[r % 7] = r as i64;
                b.fill(-(r as i64));
            })
            .unwrap()
        };
        let one = run(1);
        assert_eq!(one[0].len(), 700);
        assert_eq!(one[0][3 * 7 + 3], 3);
        assert_eq!(one[1][5 * 7], -5);
        assert_eq!(one, run(2));
        assert_eq!(one, run(4));
    }

    #[test]
    fn take_len_keeps_a_recycled_buffers_contents_and_zeroes_growth() {
        let pool = BufferPool::<i64>::new();
        let n = POOL_MIN_BYTES / 4;
        pool.give(vec![7; n]);
        let b = pool.take_len(n - 3);
        assert_eq!(b.len(), n - 3);
        assert!(
            b.iter().all(|&x| x == 7),
            "contents kept (the control for the next test)"
        );
        pool.give(b);
        let c = pool.take_len(n);
        assert_eq!(&c[n - 3..], &[0, 0, 0]);
        assert!(pool.take(n).is_empty());
    }

    #[test]
    fn parallel_rows_start_zeroed_from_dirty_recycled_buffers() {
        let (rows, width) = (64, POOL_MIN_BYTES / 8 / 16);
        for _ in 0..3 {
            i64::pool().give(vec![-9; rows * width]);
            let [a] = fill_rows::<i64, _, 1>(2, rows, width, |r, [a]| {
                assert!(a.iter().all(|&x| x == 0), "row {r} starts zeroed");
                a[r % width] = r as i64 + 1;
            })
            .unwrap();
            assert_eq!(a.iter().filter(|&&x| x != 0).count(), rows);
            i64::pool().give(a);
        }
    }
}
