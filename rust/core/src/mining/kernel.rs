//! The blocked products behind the exact search: `C[i][j] = Σ_p A[i][p]·B[j][p]`.
//!
//! **Every entry is one fused multiply-add chain over `p = 0, 1, …, d−1` in order, starting
//! from `+0.0`.** The kernels below differ only in how many entries they compute at once (the
//! register tile `MR × NR`); blocking over `p` continues the same chain (the partial sums are
//! reloaded, not added), and padded rows and columns are zeros whose results are never read.
//! A score is therefore the same bits whatever the tile sizes, the thread count or the
//! instruction set — and [`dot`] computes exactly the same value for a single pair.
//!
//! Layout ("packing"): operands are copied into panels where the `MR` (or `NR`) values of the
//! same `p` are adjacent: `A` panel `ip` holds rows `ip·MR ..` as `[p][i]`, `B` panel `jp`
//! holds rows `jp·NR ..` as `[p][j]`. Packing is also where float16 storage is widened and
//! rows are L2-normalised for cosine similarity.
//!
//! The micro-kernel is plain Rust over fixed-size arrays; compiled inside a function with the
//! right `target_feature`s, LLVM keeps the `MR × NR` accumulators in vector registers (AVX-512:
//! 12 × 32 = 24 zmm registers; AVX2: 6 × 16 = 12 ymm). The instruction set is chosen once at
//! run time.

use std::sync::OnceLock;

/// The `p`-block length: the A micro-panel (`MR × KC` floats) stays in L1 while B streams.
pub(crate) const KC: usize = 512;

/// Computes the `MR × NR` block of `c` (row stride `ldc`) from an `A` micro-panel (`kc × MR`)
/// and a `B` micro-panel (`kc × NR`). With `resume`, the chain continues from the values
/// already in `c` (the previous `p`-block), otherwise it starts from zero.
#[inline(always)]
fn micro<const MR: usize, const NR: usize>(
    kc: usize,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    ldc: usize,
    resume: bool,
) {
    let mut acc = [[0f32; NR]; MR];
    if resume {
        for (i, row) in acc.iter_mut().enumerate() {
            row.copy_from_slice(&c[i * ldc..i * ldc + NR]);
        }
    }
    for (ap, bp) in a.chunks_exact(MR).zip(b.chunks_exact(NR)).take(kc) {
        let ap: &[f32; MR] = ap.try_into().expect("MR chunk");
        let bp: &[f32; NR] = bp.try_into().expect("NR chunk");
        for i in 0..MR {
            for j in 0..NR {
                acc[i][j] = ap[i].mul_add(bp[j], acc[i][j]);
            }
        }
    }
    for (i, row) in acc.iter().enumerate() {
        c[i * ldc..i * ldc + NR].copy_from_slice(row);
    }
}

/// One strip: an `A` micro-panel against `panels` consecutive `B` panels (each `d × NR`),
/// into `c` (`MR` rows of stride `ldc`, `panels · NR` columns), blocked over `p` by [`KC`].
#[inline(always)]
pub(crate) fn strip<const MR: usize, const NR: usize>(
    d: usize,
    a: &[f32],
    b: &[f32],
    panels: usize,
    c: &mut [f32],
    ldc: usize,
) {
    let mut p0 = 0;
    while p0 < d {
        let kc = KC.min(d - p0);
        let a_blk = &a[p0 * MR..(p0 + kc) * MR];
        for jp in 0..panels {
            let b_blk = &b[jp * d * NR + p0 * NR..jp * d * NR + (p0 + kc) * NR];
            micro::<MR, NR>(kc, a_blk, b_blk, &mut c[jp * NR..], ldc, p0 > 0);
        }
        p0 += kc;
    }
}

/// A strip function `(d, a_panel, b_panels, panels, c, ldc)`: [`strip`] compiled for one
/// instruction set.
pub(crate) type StripFn = fn(usize, &[f32], &[f32], usize, &mut [f32], usize);

/// Work compiled once per instruction set: [`dispatch`] calls `run::<MR, NR>(strip)` from
/// inside a function built with that set's `target_feature`s, so everything `run` inlines
/// (packing, conversions, scans) is vectorised for it, and `strip` is the matching product
/// (a separate function: LLVM register-allocates the micro-kernel reliably only there).
/// Implementations mark `run` `#[inline(always)]`.
pub(crate) trait Tiled {
    type Output;
    fn run<const MR: usize, const NR: usize>(&self, strip: StripFn) -> Self::Output;
}

/// An instruction set the kernels are compiled for, with its register tile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// AVX-512F + FMA: a 12 × 32 tile (24 zmm accumulators).
    Avx512,
    /// AVX2 + FMA: a 6 × 16 tile (12 ymm accumulators).
    Avx2,
    /// Any CPU: a 4 × 8 tile, plain Rust (`mul_add` is still one fused operation).
    Portable,
}

impl Isa {
    /// The register tile `(MR, NR)`.
    pub fn tile(self) -> (usize, usize) {
        match self {
            Isa::Avx512 => (12, 32),
            Isa::Avx2 => (6, 16),
            Isa::Portable => (4, 8),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512",
            Isa::Avx2 => "avx2",
            Isa::Portable => "portable",
        }
    }

    /// Parses a name of [`Isa::name`].
    pub fn parse(arg: &str, s: &str) -> crate::Result<Isa> {
        [Isa::Avx512, Isa::Avx2, Isa::Portable]
            .into_iter()
            .find(|i| i.name() == s)
            .ok_or_else(|| {
                crate::CoreError::invalid(
                    arg,
                    format!("must be 'avx512', 'avx2' or 'portable', got {s:?}"),
                )
            })
    }

    /// The fastest set this CPU runs.
    pub fn best() -> Isa {
        Isa::available()[0]
    }

    /// Every set this CPU runs, fastest first (detected once).
    pub fn available() -> &'static [Isa] {
        static AVAILABLE: OnceLock<Vec<Isa>> = OnceLock::new();
        AVAILABLE.get_or_init(|| {
            let mut out = Vec::new();
            #[cfg(target_arch = "x86_64")]
            {
                use std::arch::is_x86_feature_detected as has;
                let base = has!("fma") && has!("f16c");
                if base && has!("avx512f") {
                    out.push(Isa::Avx512);
                }
                if base && has!("avx2") {
                    out.push(Isa::Avx2);
                }
            }
            out.push(Isa::Portable);
            out
        })
    }
}

fn strip_portable(d: usize, a: &[f32], b: &[f32], panels: usize, c: &mut [f32], ldc: usize) {
    strip::<4, 8>(d, a, b, panels, c, ldc)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{StripFn, Tiled, strip};

    #[target_feature(enable = "avx512f,fma,f16c")]
    fn strip_avx512(d: usize, a: &[f32], b: &[f32], panels: usize, c: &mut [f32], ldc: usize) {
        strip::<12, 32>(d, a, b, panels, c, ldc)
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn strip_avx2(d: usize, a: &[f32], b: &[f32], panels: usize, c: &mut [f32], ldc: usize) {
        strip::<6, 16>(d, a, b, panels, c, ldc)
    }

    #[target_feature(enable = "avx512f,fma,f16c")]
    fn avx512<T: Tiled>(job: &T, strip: StripFn) -> T::Output {
        job.run::<12, 32>(strip)
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn avx2<T: Tiled>(job: &T, strip: StripFn) -> T::Output {
        job.run::<6, 16>(strip)
    }

    // SAFETY (every `unsafe` block below): `dispatch` reaches these only for an `Isa` that
    // `Isa::available` lists, i.e. after `is_x86_feature_detected!` reported every feature the
    // callee is compiled with (avx512f or avx2, plus fma and f16c). The callees are safe Rust.

    #[allow(unsafe_code)]
    fn safe_strip_avx512(d: usize, a: &[f32], b: &[f32], panels: usize, c: &mut [f32], ldc: usize) {
        unsafe { strip_avx512(d, a, b, panels, c, ldc) }
    }

    #[allow(unsafe_code)]
    fn safe_strip_avx2(d: usize, a: &[f32], b: &[f32], panels: usize, c: &mut [f32], ldc: usize) {
        unsafe { strip_avx2(d, a, b, panels, c, ldc) }
    }

    #[allow(unsafe_code)]
    pub(super) fn run_avx512<T: Tiled>(job: &T) -> T::Output {
        unsafe { avx512(job, safe_strip_avx512) }
    }

    #[allow(unsafe_code)]
    pub(super) fn run_avx2<T: Tiled>(job: &T) -> T::Output {
        unsafe { avx2(job, safe_strip_avx2) }
    }
}

/// Runs `job` compiled for `isa`. An `isa` this CPU lacks falls back to the portable build.
pub(crate) fn dispatch<T: Tiled>(isa: Isa, job: &T) -> T::Output {
    if !Isa::available().contains(&isa) {
        return job.run::<4, 8>(strip_portable);
    }
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => x86::run_avx512(job),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => x86::run_avx2(job),
        _ => job.run::<4, 8>(strip_portable),
    }
}

/// `Σ_p a[p]·b[p]` as the same fused chain the kernels compute (bit-identical to their entry).
#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .fold(0.0f32, |acc, (&x, &y)| x.mul_add(y, acc))
}

/// IEEE binary16 → binary32, exact for every input (normals, subnormals, ±0, ±inf, NaN).
/// Branch-free so that it vectorises: the 15 magnitude bits shifted into place are the f32
/// with the same significand and an exponent 112 too small; multiplying by 2^112 rebias it
/// (and normalises subnormals exactly), and infinities/NaNs get the all-ones exponent back.
#[inline(always)]
pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let h = u32::from(h);
    let sign = (h & 0x8000) << 16;
    let mag = f32::from_bits((h & 0x7fff) << 13) * f32::from_bits(0x7780_0000); // 2^112
    let bits = if (h & 0x7c00) == 0x7c00 {
        mag.to_bits() | 0x7f80_0000
    } else {
        mag.to_bits()
    };
    f32::from_bits(bits | sign)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference_f16(h: u16) -> f32 {
        let sign = if h & 0x8000 != 0 { -1.0f64 } else { 1.0 };
        let e = i32::from((h >> 10) & 0x1f);
        let m = f64::from(h & 0x3ff);
        let v = match e {
            0 => m * 2f64.powi(-24),
            31 if m == 0.0 => f64::INFINITY,
            31 => f64::NAN,
            _ => (1.0 + m / 1024.0) * 2f64.powi(e - 15),
        };
        (sign * v) as f32
    }

    #[test]
    fn f16_conversion_is_exact_for_every_value() {
        for h in 0..=u16::MAX {
            let got = f16_to_f32(h);
            let want = reference_f16(h);
            if want.is_nan() {
                assert!(got.is_nan(), "{h:#06x}");
            } else {
                assert_eq!(got.to_bits(), want.to_bits(), "{h:#06x}");
            }
        }
    }

    /// Packs `rows × d` row-major values into panels of `w` rows (zero padded).
    fn pack(x: &[f32], rows: usize, d: usize, w: usize) -> Vec<f32> {
        let panels = rows.div_ceil(w);
        let mut out = vec![0f32; panels * d * w];
        for r in 0..rows {
            let (ip, i) = (r / w, r % w);
            for p in 0..d {
                out[ip * d * w + p * w + i] = x[r * d + p];
            }
        }
        out
    }

    struct Product<'a> {
        a: &'a [f32],
        b: &'a [f32],
        m: usize,
        n: usize,
        d: usize,
    }

    impl Tiled for Product<'_> {
        type Output = Vec<f32>;

        #[inline(always)]
        fn run<const MR: usize, const NR: usize>(&self, strip: StripFn) -> Vec<f32> {
            let (m, n, d) = (self.m, self.n, self.d);
            let pa = pack(self.a, m, d, MR);
            let pb = pack(self.b, n, d, NR);
            let panels = n.div_ceil(NR);
            let ldc = panels * NR;
            let mut strip_out = vec![f32::NAN; MR * ldc];
            let mut out = vec![0f32; m * n];
            for ip in 0..m.div_ceil(MR) {
                strip(
                    d,
                    &pa[ip * d * MR..(ip + 1) * d * MR],
                    &pb,
                    panels,
                    &mut strip_out,
                    ldc,
                );
                for i in 0..MR.min(m - ip * MR) {
                    let row = ip * MR + i;
                    out[row * n..(row + 1) * n].copy_from_slice(&strip_out[i * ldc..i * ldc + n]);
                }
            }
            out
        }
    }

    #[test]
    fn every_kernel_gives_the_fused_chain_bit_for_bit() {
        // d above KC exercises the resumed chain; odd sizes exercise padding.
        for &d in &[1usize, 7, 64, KC + 37] {
            let (m, n) = (13usize, 45usize);
            let mut s = 0x1234_5678u64;
            let mut next = || {
                s = crate::rng::mix64(s.wrapping_add(0x9E37_79B9_7F4A_7C15));
                (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            };
            let a: Vec<f32> = (0..m * d).map(|_| next()).collect();
            let b: Vec<f32> = (0..n * d).map(|_| next()).collect();
            let job = Product {
                a: &a,
                b: &b,
                m,
                n,
                d,
            };
            for &isa in Isa::available() {
                let c = dispatch(isa, &job);
                for row in 0..m {
                    for j in 0..n {
                        let want = dot(&a[row * d..(row + 1) * d], &b[j * d..(j + 1) * d]);
                        assert_eq!(
                            c[row * n + j].to_bits(),
                            want.to_bits(),
                            "{} d={d} ({row}, {j})",
                            isa.name()
                        );
                    }
                }
            }
        }
    }
}
