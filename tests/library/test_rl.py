"""lmobjectives.rl: completion masks, returns, GAE, whitening, group baselines, KL estimators,
BLEU/self-BLEU (against NLTK) and rollout maps — against plain-Python statements of the
formulas, with left/right padding, thread counts, dtypes and every failure mode."""

from __future__ import annotations

import math
import pickle
import warnings

import numpy as np
import pytest

from lmobjectives import InvalidArgumentError, ShapeError, rl

EOS, PAD = 2, 0


# -- plain-Python statements of the formulas ---------------------------------------------------


def ref_returns(r, m, gamma):
    out = np.zeros_like(r, dtype=np.float64)
    for i in range(r.shape[0]):
        g = 0.0
        for t in reversed(np.flatnonzero(m[i])):
            g = r[i, t] + gamma * g
            out[i, t] = g
    return out


def ref_gae(r, v, m, gamma, lam, boot=None):
    adv = np.zeros_like(r, dtype=np.float64)
    ret = np.zeros_like(r, dtype=np.float64)
    for i in range(r.shape[0]):
        next_v = 0.0 if boot is None else boot[i]
        last = 0.0
        for t in reversed(np.flatnonzero(m[i])):
            delta = r[i, t] + gamma * next_v - v[i, t]
            last = delta + gamma * lam * last
            adv[i, t], ret[i, t] = last, last + v[i, t]
            next_v = v[i, t]
    return adv, ret


def completions(rng, rows=6, cols=9, vocab=20, eos=EOS, pad=PAD):
    """Right-padded completions: random tokens (never EOS/PAD), an EOS in most rows, then
    padding; returns ids and the true lengths (EOS included)."""
    ids = np.full((rows, cols), pad, dtype=np.int64)
    lengths = []
    for i in range(rows):
        n = int(rng.integers(1, cols + 1))
        row = rng.integers(3, vocab, size=n)
        if i % 3 != 2:  # finished rows end with EOS
            row[-1] = eos
        ids[i, :n] = row
        lengths.append(n)
    return ids, np.array(lengths)


def left_pad(ids, lengths, pad=PAD):
    out = np.full_like(ids, pad)
    for i, n in enumerate(lengths):
        out[i, ids.shape[1] - n :] = ids[i, :n]
    return out


def random_mask(rng, rows, cols, p=0.7):
    return rng.random((rows, cols)) < p


# -- completion masks --------------------------------------------------------------------------


def test_completion_mask_by_hand():
    ids = np.array([[5, 6, 2, 0, 0], [5, 6, 7, 8, 9], [2, 0, 0, 0, 0], [5, 0, 0, 0, 0]])
    c = rl.completion_mask(ids, EOS, pad_token_id=PAD)
    assert c.mask.astype(int).tolist() == [
        [1, 1, 1, 0, 0],
        [1, 1, 1, 1, 1],
        [1, 0, 0, 0, 0],
        [1, 0, 0, 0, 0],
    ]
    assert c.last.tolist() == [2, 4, 0, 0]
    assert c.lengths.tolist() == [3, 5, 1, 1]
    assert c.truncated.tolist() == [False, True, False, True]
    # without pad_token_id the trailing pads of a truncated row count as tokens
    assert rl.completion_mask(ids, EOS).lengths.tolist() == [3, 5, 1, 5]


def test_completion_mask_options():
    ids = np.array([[5, 6, 2, 0, 0], [5, 6, 7, 8, 9]])
    no_eos = rl.completion_mask(ids, EOS, include_eos=False)
    assert no_eos.mask.astype(int).tolist() == [[1, 1, 0, 0, 0], [1, 1, 1, 1, 1]]
    assert no_eos.last.tolist() == [1, 4]
    cut = rl.completion_mask(ids, EOS, mask_truncated=True)
    assert cut.mask[1].sum() == 0 and cut.last[1] == -1 and cut.truncated[1]
    # several stop ids: the first of any of them ends the completion
    multi = rl.completion_mask(np.array([[5, 9, 6, 2]]), [2, 9])
    assert multi.last.tolist() == [1]


def test_completion_start_skips_the_prompt():
    # [left-padded prompt | completion]: an EOS id inside the prompt does not end anything.
    ids = np.array([[0, 7, 2, 5, 6, 2, 0], [4, 2, 7, 5, 5, 5, 5]])
    c = rl.completion_mask(ids, EOS, completion_start=3)
    assert c.mask.astype(int).tolist() == [[0, 0, 0, 1, 1, 1, 0], [0, 0, 0, 1, 1, 1, 1]]
    assert c.first.tolist() == [3, 3]
    assert c.last.tolist() == [5, 6]
    per_row = rl.completion_mask(ids, EOS, completion_start=[3, 2])
    assert per_row.first.tolist() == [3, 2] and per_row.lengths.tolist() == [3, 5]


def test_gpt2_style_pad_equals_eos_needs_the_attention_mask_on_the_left():
    # pad = eos = 50: right padding is unambiguous; on the left the attention mask decides.
    eos = 50
    right = np.array([[7, 8, eos, eos, eos], [eos, eos, eos, eos, eos]])
    c = rl.completion_mask(right, eos, pad_token_id=eos)
    assert c.lengths.tolist() == [3, 1]  # the second completion is a lone EOS
    left = np.array([[eos, eos, 7, 8, eos], [eos, eos, eos, eos, eos]])
    att = np.array([[0, 0, 1, 1, 1], [0, 0, 0, 0, 1]])
    c_left = rl.completion_mask(left, eos, pad_token_id=eos, attention_mask=att)
    assert c_left.lengths.tolist() == [3, 1]
    assert c_left.last.tolist() == [4, 4]
    # Without it a lone EOS is indistinguishable from padding (documented).
    guess = rl.completion_mask(left, eos, pad_token_id=eos, padding_side="left")
    assert guess.lengths.tolist() == [3, 0]


def test_left_and_right_padding_give_the_same_masks():
    rng = np.random.default_rng(0)
    ids, lengths = completions(rng, rows=40, cols=12)
    right = rl.completion_mask(ids, EOS, pad_token_id=PAD)
    lids = left_pad(ids, lengths)
    left = rl.completion_mask(lids, EOS, pad_token_id=PAD, padding_side="left")
    att = rl.completion_mask(lids, EOS, attention_mask=lids != PAD)
    for c in (left, att):
        assert c.lengths.tolist() == right.lengths.tolist()
        assert c.truncated.tolist() == right.truncated.tolist()
        assert [lids[i][c.mask[i]].tolist() for i in range(40)] == [
            ids[i][right.mask[i]].tolist() for i in range(40)
        ]
        assert (c.last - c.first == right.last - right.first).all()


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint16, np.uint8])
def test_completion_mask_reads_any_integer_dtype(dtype):
    ids = np.array([[5, 6, 2, 0]], dtype=dtype)
    assert rl.completion_mask(ids, EOS).last.tolist() == [2]


def test_completion_mask_errors():
    ids = np.array([[5, 6, 2, 0]])
    with pytest.raises(ValueError, match="ids: expected a 2-D"):
        rl.completion_mask(ids[0], EOS)
    with pytest.raises(TypeError, match="ids: expected an integer"):
        rl.completion_mask(ids.astype(float), EOS)
    with pytest.raises(InvalidArgumentError, match="pad_token_id"):
        rl.completion_mask(ids, EOS, padding_side="left")
    with pytest.raises(ValueError, match="padding_side"):
        rl.completion_mask(ids, EOS, padding_side="middle")
    with pytest.raises(InvalidArgumentError, match="contiguous run"):
        rl.completion_mask(ids, EOS, attention_mask=np.array([[1, 0, 1, 1]]))
    with pytest.raises(ShapeError, match="attention_mask"):
        rl.completion_mask(ids, EOS, attention_mask=np.ones((1, 3)))
    with pytest.raises(InvalidArgumentError, match="completion_start"):
        rl.completion_mask(ids, EOS, completion_start=5)
    with pytest.raises(ShapeError, match="completion_start"):
        rl.completion_mask(ids, EOS, completion_start=[0, 1])
    with pytest.raises(ValueError, match="completion_start"):
        rl.completion_mask(ids, EOS, completion_start=-1)
    with pytest.raises(TypeError, match="eos_token_id"):
        rl.completion_mask(ids, [])


def test_place_scores_puts_the_score_on_the_last_real_token_not_the_pad_after_it():
    # TRL #3750: PPO adds the score at sequence_length + 1, the first PAD after EOS.
    ids = np.array([[5, 6, 2, 0, 0], [0, 0, 5, 6, 2]])
    right = rl.completion_mask(ids[:1], EOS, pad_token_id=PAD)
    left = rl.completion_mask(ids[1:], EOS, pad_token_id=PAD, padding_side="left")
    assert rl.place_scores(np.array([1.5]), right.mask).tolist() == [[0, 0, 1.5, 0, 0]]
    assert rl.place_scores(np.array([1.5]), left.mask).tolist() == [[0, 0, 0, 0, 1.5]]
    assert ids[0, right.last[0]] == EOS and ids[1, left.last[0]] == EOS
    with pytest.raises(InvalidArgumentError, match="row 1 has no masked token"):
        rl.place_scores(np.array([1.0, 2.0]), np.array([[True, False], [False, False]]))
    with pytest.raises(InvalidArgumentError, match="non-finite"):
        rl.place_scores(np.array([np.nan]), np.array([[True]]))
    with pytest.raises(ShapeError, match="scores"):
        rl.place_scores(np.array([1.0, 2.0]), np.array([[True]]))


# -- returns, GAE, whitening, clipping ---------------------------------------------------------


@pytest.mark.parametrize("gamma", [0.0, 0.5, 0.9, 1.0])
def test_discounted_returns_match_the_loop(gamma):
    rng = np.random.default_rng(1)
    r = rng.normal(size=(7, 11))
    m = random_mask(rng, 7, 11)
    out = rl.discounted_returns(r, m, gamma=gamma)
    np.testing.assert_allclose(out, ref_returns(r, m, gamma), rtol=1e-12, atol=1e-12)
    assert (out[~m] == 0).all()


def test_sequence_level_rewards_are_placed_on_the_last_step():
    m = np.array([[True, True, True, False], [False, True, True, True]])
    out = rl.discounted_returns(np.array([1.0, 2.0]), m, gamma=0.5)
    assert out.tolist() == [[0.25, 0.5, 1.0, 0.0], [0.0, 0.5, 1.0, 2.0]]
    with pytest.raises(ValueError, match="need the mask"):
        rl.discounted_returns(np.array([1.0, 2.0]))


@pytest.mark.parametrize(("gamma", "lam"), [(1.0, 0.95), (0.9, 0.0), (0.99, 1.0), (0.5, 0.5)])
def test_gae_matches_the_loop(gamma, lam):
    rng = np.random.default_rng(2)
    r, v = rng.normal(size=(2, 9, 13))
    m = random_mask(rng, 9, 13)
    v_poisoned = np.where(m, v, np.nan)  # values outside the mask are never read
    boot = rng.normal(size=9)
    for b in (None, boot):
        adv, ret = rl.gae(r, v_poisoned, m, gamma=gamma, lam=lam, bootstrap=b)
        want_a, want_r = ref_gae(r, v, m, gamma, lam, b)
        np.testing.assert_allclose(adv, want_a, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(ret, want_r, rtol=1e-12, atol=1e-12)


def test_gae_with_lambda_one_is_reward_to_go_minus_value():
    rng = np.random.default_rng(3)
    r, v = rng.normal(size=(2, 5, 8))
    m = random_mask(rng, 5, 8)
    adv, ret = rl.gae(r, v, m, gamma=0.97, lam=1.0)
    g = rl.discounted_returns(r, m, gamma=0.97)
    np.testing.assert_allclose(adv, np.where(m, g - v, 0), atol=1e-12)
    np.testing.assert_allclose(ret, g, atol=1e-12)


def test_whiten_matches_trl_masked_whiten():
    rng = np.random.default_rng(4)
    x = rng.normal(3.0, 2.0, size=(6, 10))
    m = random_mask(rng, 6, 10)
    vals = x[m]
    mean, var = vals.mean(), vals.var(ddof=1)
    want = np.where(m, (x - mean) / np.sqrt(var + 1e-8), 0)
    np.testing.assert_allclose(rl.whiten(x, m), want, rtol=1e-12)
    keep = rl.whiten(x, m, shift_mean=False, unbiased=False, eps=0.0)
    np.testing.assert_allclose(keep, np.where(m, (x - mean) / np.sqrt(vals.var()) + mean, 0))
    w = rl.whiten(x, m)
    assert abs(w[m].mean()) < 1e-12 and abs(w[m].std(ddof=1) - 1) < 1e-6
    with pytest.raises(InvalidArgumentError, match="at least 2"):
        rl.whiten(x, np.eye(6, 10, dtype=bool) & (np.arange(6)[:, None] == 0))


def test_clip_advantages():
    a = np.array([[-7.0, 2.0, 9.0]])
    m = np.array([[True, True, False]])
    assert rl.clip_advantages(a, m).tolist() == [[-5.0, 2.0, 0.0]]
    assert rl.clip_advantages(np.array([-7.0, 7.0]), clip=1.0).tolist() == [-1.0, 1.0]
    with pytest.raises(InvalidArgumentError, match="clip"):
        rl.clip_advantages(a, m, clip=0.0)


@pytest.mark.parametrize("name", ["returns", "gae", "whiten", "kl"])
def test_left_and_right_padding_give_identical_numbers(name):
    """The same completions padded on either side give the same numbers token for token."""
    rng = np.random.default_rng(5)
    ids, lengths = completions(rng, rows=16, cols=10)
    right = rl.completion_mask(ids, EOS, pad_token_id=PAD)
    lids = left_pad(ids, lengths)
    left = rl.completion_mask(lids, EOS, pad_token_id=PAD, padding_side="left")
    a, b, c = (rng.normal(size=ids.shape) for _ in range(3))

    def shift(x):  # move each row's real tokens to where left padding puts them
        out = np.full_like(x, np.nan)
        for i, n in enumerate(lengths):
            out[i, ids.shape[1] - n :] = x[i, :n]
        return out

    def run(x, y, z, c_):
        if name == "returns":
            return rl.discounted_returns(x, c_.mask, gamma=0.9)
        if name == "gae":
            return rl.gae(x, y, c_.mask, gamma=0.99, lam=0.9)[0]
        if name == "whiten":
            return rl.whiten(x, c_.mask)
        return rl.kl_estimate(y, z, c_.mask, estimator="k3")[0]

    want = run(a, b, c, right)
    got = run(shift(a), shift(b), shift(c), left)
    for i in range(ids.shape[0]):
        np.testing.assert_array_equal(got[i][left.mask[i]], want[i][right.mask[i]])
    # sequence scores: on the EOS either way
    s = rng.normal(size=16)
    pr, pl = rl.place_scores(s, right.mask), rl.place_scores(s, left.mask)
    assert (pr[np.arange(16), right.last] == s).all() and (pl[np.arange(16), left.last] == s).all()


# -- group baselines ---------------------------------------------------------------------------


def test_grpo_matches_its_formula():
    rng = np.random.default_rng(6)
    r = rng.normal(size=24)
    g = r.reshape(-1, 8)
    want = ((g - g.mean(1, keepdims=True)) / (g.std(1, ddof=1, keepdims=True) + 1e-4)).ravel()
    np.testing.assert_allclose(rl.grpo_advantages(r, 8), want, rtol=1e-12)
    batch = (g - g.mean(1, keepdims=True)).ravel() / (r.std(ddof=1) + 1e-4)
    np.testing.assert_allclose(rl.grpo_advantages(r, 8, scale="batch"), batch, rtol=1e-12)
    none = (g - g.mean(1, keepdims=True)).ravel()
    np.testing.assert_allclose(rl.grpo_advantages(r, 8, scale="none"), none, rtol=1e-12)


def test_rloo_matches_its_formula():
    rng = np.random.default_rng(7)
    r = rng.normal(size=12)
    g = r.reshape(-1, 4)
    want = (g - (g.sum(1, keepdims=True) - g) / 3).ravel()
    np.testing.assert_allclose(rl.rloo_advantages(r, 4), want, rtol=1e-12, atol=1e-15)
    # RLOO advantages are k/(k-1) times the mean-centred ones
    np.testing.assert_allclose(
        rl.rloo_advantages(r, 4), rl.grpo_advantages(r, 4, scale="none") * 4 / 3, rtol=1e-12
    )


def test_group_advantages_sum_to_zero_and_zero_variance_groups_are_exactly_zero():
    r = np.array([0.1, 0.1, 0.1, 0.1, 1.0, 0.0, 0.5, 0.25, 0.3, 0.3, 0.3, 0.3])
    for baseline in ("mean", "leave_one_out"):
        for scale in ("group", "batch", "none"):
            out = rl.group_advantages(r, group_size=4, baseline=baseline, scale=scale)
            a = out.advantages
            assert (a[:4] == 0).all() and (a[8:] == 0).all()  # exactly, not ~1e-13
            assert abs(a[4:8].sum()) < 1e-12
    info = rl.group_advantages(r, group_size=4)
    assert info.std[0] == 0 and info.baseline[4] == pytest.approx(0.4375)


def test_groups_by_label_match_consecutive_groups():
    rng = np.random.default_rng(8)
    r = rng.normal(size=12)
    perm = rng.permutation(12)
    labels = np.repeat(np.array([30, 10, 20]), 4)
    a = rl.group_advantages(r, group_size=4).advantages
    b = rl.group_advantages(r[perm], groups=labels[perm]).advantages
    np.testing.assert_allclose(b, a[perm], rtol=1e-12)


def test_nan_scores_raise_or_get_zero_advantage():
    r = np.array([1.0, np.nan, 3.0, 4.0, 5.0, 6.0])
    with pytest.raises(InvalidArgumentError, match="score 1 is NaN"):
        rl.grpo_advantages(r, 3)
    out = rl.group_advantages(r, group_size=3, scale="none", nan="zero")
    assert out.advantages.tolist() == [-1.0, 0.0, 1.0, -1.0, 0.0, 1.0]
    assert math.isnan(out.baseline[1])
    with pytest.raises(InvalidArgumentError, match="inf"):
        rl.grpo_advantages(np.array([1.0, np.inf]), 2)


def test_group_errors():
    r = np.arange(6.0)
    with pytest.raises(ValueError, match="group_size"):
        rl.grpo_advantages(r, 4)
    with pytest.raises(InvalidArgumentError, match="single member"):
        rl.grpo_advantages(r, 1)
    with pytest.raises(ValueError, match="exactly one"):
        rl.group_advantages(r)
    with pytest.raises(ValueError, match="groups"):
        rl.group_advantages(r, groups=[0, 1])
    with pytest.raises(InvalidArgumentError, match="baseline"):
        rl.group_advantages(r, group_size=2, baseline="median")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="scale"):
        rl.group_advantages(r, group_size=2, scale="row")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scores"):
        rl.grpo_advantages(r.reshape(2, 3), 3)


def test_scst():
    s = np.array([1.0, 2.0, 0.5, 0.25])
    assert rl.scst_advantages(s, np.array([0.5, 0.5, 1.0, 1.0])).tolist() == [
        0.5,
        1.5,
        -0.5,
        -0.75,
    ]
    assert rl.scst_advantages(s, np.array([1.0, 0.0])).tolist() == [0.0, 1.0, 0.5, 0.25]
    with pytest.raises(ShapeError):
        rl.scst_advantages(s, np.array([1.0, 2.0, 3.0]))
    with pytest.raises(InvalidArgumentError, match="greedy_scores"):
        rl.scst_advantages(s, np.array([1.0, np.nan]))


def test_ema_baseline():
    ema = rl.EMABaseline(decay=0.5)
    first = ema(np.array([1.0, 3.0]))
    assert first.tolist() == [1.0, 3.0]  # no past: baseline 0
    assert ema.value == pytest.approx(2.0)  # bias-corrected: (0.5·2)/(1−0.5)
    second = ema(np.array([[4.0, 100.0]]), np.array([[True, False]]))
    assert second.tolist() == [[2.0, 0.0]]
    want = (0.5 * (0.5 * 2.0) + 0.5 * 4.0) / (1 - 0.25)
    assert ema.value == pytest.approx(want)
    clone = pickle.loads(pickle.dumps(ema))
    restored = rl.EMABaseline()
    restored.load_state_dict(ema.state_dict())
    expected = ema(np.array([1.0])).tolist()
    for other in (clone, restored):
        assert other(np.array([1.0])).tolist() == expected
    with pytest.raises(ValueError, match="decay"):
        rl.EMABaseline(decay=1.0)
    with pytest.raises(InvalidArgumentError, match="non-finite"):
        ema(np.array([np.nan]))


# -- KL ----------------------------------------------------------------------------------------


def test_kl_estimators_match_their_formulas():
    rng = np.random.default_rng(9)
    p, q = -rng.random(size=(2, 4, 6)) * 3
    m = random_mask(rng, 4, 6)
    d = q - p
    for est, f in (("k1", -d), ("k2", d * d / 2), ("k3", np.exp(d) - d - 1)):
        k, s = rl.kl_estimate(np.where(m, p, np.nan), q, m, estimator=est)
        np.testing.assert_allclose(k, np.where(m, f, 0), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(s, np.where(m, f, 0).sum(1), rtol=1e-12)
    k3, _ = rl.kl_estimate(p, q, m, estimator="k3")
    assert (k3 >= 0).all()


def test_k1_and_k3_are_unbiased_for_kl_under_samples_from_pi():
    rng = np.random.default_rng(10)
    pi = np.array([0.5, 0.3, 0.15, 0.05])
    ref = np.array([0.25, 0.25, 0.25, 0.25])
    exact = float((pi * np.log(pi / ref)).sum())
    a = rng.choice(4, p=pi, size=(4000, 50))
    lp, lr = np.log(pi)[a], np.log(ref)[a]
    for est in ("k1", "k3"):
        k, _ = rl.kl_estimate(lp, lr, estimator=est)
        sd = k.std() / math.sqrt(k.size)
        assert abs(k.mean() - exact) < 5 * sd, est
    k2, _ = rl.kl_estimate(lp, lr, estimator="k2")
    k2_sd = k2.std() / math.sqrt(k2.size)
    assert abs(k2.mean() - exact) > 10 * k2_sd  # the biased one, as a control


def test_token_rewards_put_the_kl_in_the_reward():
    m = np.array([[True, True, True, False]])
    lp = np.log([[0.5, 0.5, 0.5, 0.5]])
    lr = np.log([[0.25, 0.5, 1.0, 1.0]])
    r, k = rl.token_rewards(np.array([2.0]), m, logprobs=lp, ref_logprobs=lr, kl_coef=0.1)
    k1 = np.log(0.5) - np.log([0.25, 0.5, 1.0])
    np.testing.assert_allclose(k[0, :3], k1)
    np.testing.assert_allclose(r[0], [-0.1 * k1[0], -0.1 * k1[1], 2.0 - 0.1 * k1[2], 0.0])
    pen, _ = rl.token_rewards(
        np.array([2.0]), m, truncated=np.array([True]), missing_eos_penalty=1.0
    )
    assert pen.tolist() == [[0.0, 0.0, 1.0, 0.0]]
    with pytest.raises(ValueError, match="both or neither"):
        rl.token_rewards(np.array([2.0]), m, logprobs=lp)
    with pytest.raises(ValueError, match="truncated"):
        rl.token_rewards(np.array([2.0]), m, missing_eos_penalty=1.0)


# -- dtypes, torch input, zero copy, threads, errors ------------------------------------------


def test_float32_in_float32_out_and_lists_are_float64():
    m = np.ones((2, 3), dtype=bool)
    r32 = np.ones((2, 3), dtype=np.float32)
    assert rl.discounted_returns(r32, m, gamma=0.5).dtype == np.float32
    adv, ret = rl.gae(r32, np.zeros((2, 3), np.float32), m)
    assert adv.dtype == ret.dtype == np.float32
    assert rl.gae(r32, np.zeros((2, 3)), m)[0].dtype == np.float64  # mixed → float64
    assert rl.discounted_returns([[1, 2, 3]]).dtype == np.float64
    assert rl.kl_estimate(r32, r32)[0].dtype == np.float32
    assert rl.grpo_advantages(np.arange(4, dtype=np.float32), 2).dtype == np.float32
    assert rl.discounted_returns(r32.astype(np.float16), m).dtype == np.float32


def test_outputs_are_zero_copy_rust_buffers():
    m = np.ones((3, 4), dtype=bool)
    x = np.random.default_rng(0).normal(size=(3, 4))
    outs = [
        rl.discounted_returns(x, m),
        *rl.gae(x, x, m),
        rl.whiten(x, m),
        *rl.kl_estimate(x, x, m),
        rl.grpo_advantages(x[0], 2),
        rl.completion_mask(np.zeros((2, 3), np.int64), EOS).mask,
        rl.bleu([[1, 2]], [[1, 2]]),
    ]
    for o in outs:
        assert not o.flags.owndata
        assert type(o.base).__name__ == "PySliceContainer"


def test_torch_tensors_in_give_tensors_out_sharing_memory():
    torch = pytest.importorskip("torch")
    r = torch.randn(3, 5, dtype=torch.float64)
    m = torch.rand(3, 5) < 0.8
    out = rl.discounted_returns(r, m, gamma=0.9)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    np.testing.assert_array_equal(
        out.numpy(), rl.discounted_returns(r.numpy(), m.numpy(), gamma=0.9)
    )
    rb = torch.randn(2, 3, dtype=torch.bfloat16)
    assert rl.whiten(rb).dtype == torch.float32
    c = rl.completion_mask(torch.tensor([[5, 2, 0]]), EOS)
    assert isinstance(c.mask, torch.Tensor) and c.last.tolist() == [1]
    g = torch.randn(4, requires_grad=True)
    assert isinstance(rl.grpo_advantages(g, 2), torch.Tensor)  # detached, no error


def test_inputs_are_not_mutated():
    rng = np.random.default_rng(11)
    r, v = rng.normal(size=(2, 4, 6))
    m = random_mask(rng, 4, 6)
    copies = [r.copy(), v.copy(), m.copy()]
    rl.gae(r, v, m)
    rl.whiten(r, m)
    rl.discounted_returns(r, m)
    rl.kl_estimate(r, v, m)
    rl.clip_advantages(r, m)
    for a, b in zip((r, v, m), copies, strict=True):
        np.testing.assert_array_equal(a, b)


def test_same_output_for_any_thread_count():
    rng = np.random.default_rng(12)
    rows, cols = 256, 512  # large enough to actually use several threads
    r, v = rng.normal(size=(2, rows, cols))
    m = random_mask(rng, rows, cols, 0.9)
    ids, _ = completions(rng, rows=rows, cols=cols, vocab=40)
    runs = []
    for t in (1, 2, 4):
        runs.append(
            [
                rl.discounted_returns(r, m, gamma=0.99, num_threads=t),
                *rl.gae(r, v, m, num_threads=t),
                rl.whiten(r, m, num_threads=t),
                rl.kl_estimate(r, v, m, estimator="k3", num_threads=t)[0],
                rl.completion_mask(ids, EOS, num_threads=t).mask,
                rl.self_bleu(ids[:64].tolist(), num_threads=t),
            ]
        )
    for other in runs[1:]:
        for a, b in zip(runs[0], other, strict=True):
            np.testing.assert_array_equal(a, b)


def test_bad_numbers_and_shapes_are_clear_errors():
    r = np.zeros((2, 3))
    m = np.ones((2, 3), dtype=bool)
    with pytest.raises(ValueError, match=r"gamma: must be in \[0, 1\]"):
        rl.discounted_returns(r, m, gamma=1.5)
    with pytest.raises(ValueError, match="lam"):
        rl.gae(r, r, m, lam=-0.1)
    with pytest.raises(ValueError, match="gamma"):
        rl.gae(r, r, m, gamma=float("nan"))
    bad = r.copy()
    bad[1, 2] = np.nan
    nan_at = r"rewards: non-finite value NaN at row 1, position 2"
    with pytest.raises(InvalidArgumentError, match=nan_at):
        rl.discounted_returns(bad, m)
    assert rl.discounted_returns(bad, m & (np.arange(3) < 2)).shape == (2, 3)  # outside mask
    with pytest.raises(InvalidArgumentError, match="values: non-finite"):
        rl.gae(r, bad, m)
    with pytest.raises(ShapeError, match="values"):
        rl.gae(r, np.zeros((2, 4)), m)
    with pytest.raises(ShapeError, match="mask"):
        rl.gae(r, r, np.ones((3, 3), bool))
    with pytest.raises(ShapeError, match="bootstrap"):
        rl.gae(r, r, m, bootstrap=np.zeros(3))
    with pytest.raises(InvalidArgumentError, match="bootstrap"):
        rl.gae(r, r, m, bootstrap=np.array([0.0, np.inf]))
    with pytest.raises(ValueError, match="values: expected a 2-D"):
        rl.gae(r, np.zeros(3), m)
    with pytest.raises(TypeError, match="rewards: expected real numbers"):
        rl.discounted_returns(np.zeros((2, 3), dtype=complex))
    with pytest.raises(ShapeError, match="ref_logprobs"):
        rl.kl_estimate(r, np.zeros((2, 2)))
    with pytest.raises(InvalidArgumentError, match="estimator"):
        rl.kl_estimate(r, r, estimator="k4")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="eps"):
        rl.whiten(r + np.arange(3), eps=-1.0)
    with pytest.raises(ValueError, match="num_threads"):
        rl.whiten(r, num_threads=-1)


# -- BLEU and self-BLEU against NLTK ----------------------------------------------------------

nltk_bleu = pytest.importorskip("nltk.translate.bleu_score")


def frozen_sentences(seed, n, vocab=30, max_len=15, near=None):
    """A fixed set of token-id sentences: lengths 0…max_len (empty and one-token sentences
    included), repeated tokens common; with ``near``, every other one is a sentence of
    ``near`` with one or two tokens changed (so high-order n-grams match too)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        if near is not None and i % 2:
            s = list(near[int(rng.integers(len(near)))])
            for _ in range(int(rng.integers(1, 3))):
                if s:
                    s[int(rng.integers(len(s)))] = int(rng.integers(vocab))
        else:
            s = rng.integers(0, vocab, size=int(rng.integers(0, max_len + 1))).tolist()
        out.append(s)
    out[0], out[2] = [], [3]
    return out


def nltk_sentence(refs, hyp, n, smoothing):
    sf = nltk_bleu.SmoothingFunction()
    fn = sf.method1 if smoothing == "method1" else sf.method0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # method0 warns on zero precisions
        return float(nltk_bleu.sentence_bleu(refs, hyp, (1.0 / n,) * n, smoothing_function=fn))


@pytest.mark.parametrize("max_n", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("smoothing", ["method1", "none"])
def test_bleu_equals_nltk_sentence_bleu(max_n, smoothing):
    refs = frozen_sentences(2, 60)[3:]
    hyps = frozen_sentences(1, 40, near=refs)
    ours = rl.bleu(hyps, refs, max_n=max_n, smoothing=smoothing)
    want = [nltk_sentence(refs, h, max_n, smoothing) for h in hyps]
    np.testing.assert_allclose(ours, want, rtol=1e-12, atol=1e-12)
    assert len({round(x, 6) for x in want}) > 4  # the set exercises many different values


@pytest.mark.parametrize("max_n", [2, 3, 4])
def test_self_bleu_equals_nltk_leave_one_out(max_n):
    samples = frozen_sentences(3, 30, near=frozen_sentences(4, 10))
    ours = rl.self_bleu(samples, max_n=max_n)
    want = [
        nltk_sentence(samples[:i] + samples[i + 1 :], samples[i], max_n, "method1")
        for i in range(len(samples))
    ]
    np.testing.assert_allclose(ours, want, rtol=1e-12, atol=1e-12)


def test_bleu_frozen_nltk_values():
    """NLTK 3.10.4's outputs on a fixed pair, recorded: a change in NLTK's algorithm shows up
    here even if the live comparison above is re-pinned."""
    ref = [[1, 2, 3, 4, 5, 6, 7, 8], [1, 2, 9, 4, 5, 6]]
    hyp = [1, 2, 3, 4, 5, 9, 7]
    got = rl.bleu([hyp], ref, max_n=4)[0]
    assert got == pytest.approx(0.668740304976422, abs=1e-15)
    assert rl.bleu([[1, 2, 3]], ref, max_n=4)[0] == pytest.approx(0.20687381245863395, abs=1e-15)


def test_bleu_inputs_and_weights():
    hyps = frozen_sentences(4, 10)
    refs = frozen_sentences(5, 10)
    width = max(map(len, hyps))
    dense = np.full((len(hyps), width), -1, dtype=np.int64)
    for i, h in enumerate(hyps):
        dense[i, : len(h)] = h
    np.testing.assert_array_equal(
        rl.bleu(dense, refs, hypotheses_mask=dense >= 0), rl.bleu(hyps, refs)
    )
    np.testing.assert_array_equal(
        rl.bleu([np.array(h, dtype=np.int32) for h in hyps], refs), rl.bleu(hyps, refs)
    )
    w = (0.5, 0.3, 0.2)
    want = [
        nltk_bleu.sentence_bleu(
            refs, h, w, smoothing_function=nltk_bleu.SmoothingFunction().method1
        )
        for h in hyps
    ]
    np.testing.assert_allclose(rl.bleu(hyps, refs, weights=w), want, rtol=1e-12, atol=1e-12)


def test_bleu_errors():
    with pytest.raises(InvalidArgumentError, match="references"):
        rl.bleu([[1]], [])
    with pytest.raises(InvalidArgumentError, match="at least 2 samples"):
        rl.self_bleu([[1, 2]])
    with pytest.raises(InvalidArgumentError, match="weights"):
        rl.bleu([[1]], [[1]], weights=[0.5, -0.5])
    with pytest.raises(ValueError, match="smoothing"):
        rl.bleu([[1]], [[1]], smoothing="method7")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_n"):
        rl.bleu([[1]], [[1]], max_n=0)
    with pytest.raises(TypeError, match="hypotheses"):
        rl.bleu([[1.5]], [[1]])
    with pytest.raises(InvalidArgumentError, match="epsilon"):
        rl.bleu([[1]], [[1]], epsilon=0.0)


# -- Monte-Carlo rollout maps ------------------------------------------------------------------


@pytest.mark.parametrize("order", ["prefix_major", "sample_major"])
def test_rollout_rewards_stay_aligned(order):
    """A score that is a deterministic hash of (sample, prefix, rollout) comes back at the
    right (sample, position) whatever the order (TextGAN-PyTorch #62)."""
    lengths = [5, 3, 1, 4]
    plan = rl.rollout_plan(lengths, 3, order=order)
    assert len(plan.sample) == sum(max(n - 1, 0) for n in lengths) * 3
    scores = np.sin(plan.sample * 7.0 + plan.prefix_length * 1.3 + plan.rollout * 0.1)
    final = np.array([10.0, 20.0, 30.0, 40.0])
    q = rl.rollout_rewards(scores, plan, final, seq_len=6)
    for b, n in enumerate(lengths):
        for i in range(n - 1):
            want = np.mean([math.sin(b * 7.0 + (i + 1) * 1.3 + k * 0.1) for k in range(3)])
            assert q[b, i] == pytest.approx(want, abs=1e-12)
        assert q[b, n - 1] == final[b]
        assert (q[b, n:] == 0).all()
    perm = np.random.default_rng(0).permutation(len(scores))
    shuffled = rl.RolloutPlan(
        plan.sample[perm], plan.prefix_length[perm], plan.rollout[perm], plan.lengths
    )
    np.testing.assert_allclose(rl.rollout_rewards(scores[perm], shuffled, final, seq_len=6), q)


def test_prefix_major_plan_is_blocked_by_prefix_length():
    plan = rl.rollout_plan([3, 3], 2)
    assert plan.prefix_length.tolist() == [1, 1, 1, 1, 2, 2, 2, 2]
    assert plan.rollout.tolist() == [0, 0, 1, 1, 0, 0, 1, 1]
    assert plan.sample.tolist() == [0, 1, 0, 1, 0, 1, 0, 1]


def test_rollout_errors():
    plan = rl.rollout_plan([3], 2)
    with pytest.raises(InvalidArgumentError, match="rollouts"):
        rl.rollout_rewards(
            np.zeros(3),
            rl.RolloutPlan(plan.sample[:3], plan.prefix_length[:3], plan.rollout[:3], plan.lengths),
            [0.0],
        )
    with pytest.raises(ShapeError, match="final_scores"):
        rl.rollout_rewards(np.zeros(4), plan, [0.0, 1.0])
    with pytest.raises(InvalidArgumentError, match="num_rollouts"):
        rl.rollout_plan([3], 0)
    with pytest.raises(InvalidArgumentError, match="order"):
        rl.rollout_plan([3], 1, order="random")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="scores"):
        rl.rollout_rewards(np.full(4, np.nan), plan, [0.0])
