"""The cross-seed mechanism comparison (twm.analysis.mechanisms) on hand-built patterns: Φ of repeat copy and of a
task with transient coordinates written out by hand, identical, sign-flipped, shifted and compressed patterns."""

import numpy as np
import pytest

from twm.analysis.mechanisms import (
    mechanism_agreement,
    mechanism_kind,
    mechanism_summary,
    pattern_agreement,
    pattern_entries,
    pattern_from_entries,
    phi_pattern,
    sign_pattern,
)
from twm.analysis.plots import plot_mechanism_agreement

# repeat copy at s = d = 2: the shift (variable 2 -> 1) and the new variable copies variable 1 (docs/science.md §1)
F_COPY = np.array([[1, 0], [0, 1], [0, 0], [0, 0]])
PHI_COPY = np.array([[0, 0, 1, 0],
                     [0, 0, 0, 1],
                     [1, 0, 0, 0],
                     [0, 1, 0, 0]])
# s = d = 2, new dim 0 = variable 1 dim 0, new dim 1 = variable 2 dim 0: successors 0->2, 1->3, 2->0, 3->2, so only
# coordinates 0 and 2 lie on a cycle (1 and 3 are transient); Φ's pattern keeps the cycle entries (0,2), (2,0)
F_TRANSIENT = np.array([[1, 0], [0, 0], [0, 1], [0, 0]])
PHI_TRANSIENT = np.zeros((4, 4), dtype=int)
PHI_TRANSIENT[0, 2] = PHI_TRANSIENT[2, 0] = 1


def test_phi_patterns_by_hand():
    assert np.array_equal(phi_pattern(F_COPY, 2), PHI_COPY)
    assert np.array_equal(phi_pattern(F_TRANSIENT, 2), PHI_TRANSIENT)


def test_sign_pattern_level_and_kept():
    M = np.array([[0.9, -0.6, 0.5, 2.0],
                  [-0.51, 0.1, 0.0, -3.0],
                  [0.7, 0.7, -0.7, 0.7],
                  [5.0, 5.0, 5.0, 5.0]])
    expected = np.array([[1, -1, 0, 0],   # 0.5 is not above the level; column 3 is not kept
                         [-1, 0, 0, 0],
                         [1, 1, -1, 0],
                         [0, 0, 0, 0]])   # row 3 is not kept
    assert np.array_equal(sign_pattern(M, [0, 1, 2], level=0.5), expected)
    assert np.array_equal(sign_pattern(M, np.array([True, True, True, False]), level=0.5), expected)


def test_entries_round_trip():
    P = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]])
    assert pattern_entries(P) == [[0, 1, -1], [1, 0, 1], [2, 2, 1]]
    assert np.array_equal(pattern_from_entries(pattern_entries(P), 3), P)


def test_agreement_of_hand_built_patterns():
    flipped = PHI_COPY.copy()
    flipped[2, 0] = -1                       # one boundary sign flipped: 3 of the 4 union entries agree
    negated = -PHI_COPY                      # every sign flipped: none agrees
    shifted = np.roll(PHI_COPY, 1, axis=1)   # support moved by one column: disjoint, union 8, none agrees
    compressed = PHI_COPY.copy()
    compressed[2:] = 0                       # the boundary block lost: 2 of the 4 union entries agree
    empty = np.zeros((4, 4), dtype=int)
    assert pattern_agreement(PHI_COPY, PHI_COPY) == 1.0
    assert pattern_agreement(PHI_COPY, flipped) == 0.75
    assert pattern_agreement(PHI_COPY, negated) == 0.0
    assert pattern_agreement(PHI_COPY, shifted) == 0.0
    assert pattern_agreement(PHI_COPY, compressed) == 0.5
    assert pattern_agreement(empty, empty) == 1.0
    assert pattern_agreement(PHI_COPY, empty) == 0.0
    half = PHI_COPY + shifted                # 8 entries, 4 of them Φ's: against Φ 4 of 8 agree
    assert pattern_agreement(half, PHI_COPY) == 0.5

    A = mechanism_agreement([PHI_COPY, flipped, None, compressed])
    # flipped vs compressed: union = flipped's 4 entries; they agree on (0,2) and (1,3) only -> 2/4
    expected = np.array([[1.0, 0.75, np.nan, 0.5],
                         [0.75, 1.0, np.nan, 0.5],
                         [np.nan, np.nan, np.nan, np.nan],
                         [0.5, 0.5, np.nan, 1.0]])
    np.testing.assert_array_equal(A, expected)
    with pytest.raises(ValueError, match="shapes"):
        pattern_agreement(PHI_COPY, np.zeros((2, 2)))


def test_mechanism_kinds():
    flipped = PHI_COPY.copy()
    flipped[3, 1] = -1
    assert mechanism_kind(PHI_COPY, 4, F_COPY, 2) == "exact"
    assert mechanism_kind(PHI_COPY, 5, F_COPY, 2) == "other"        # counts differ: not exact
    assert mechanism_kind(flipped, 4, F_COPY, 2) == "other"
    assert mechanism_kind(PHI_COPY, 3, F_COPY, 2) == "compressed"   # fewer persistent modes than s*d
    assert mechanism_kind(None, 2, F_COPY, 2) == "compressed"       # counts alone suffice for compression
    assert mechanism_kind(None, 4, F_COPY, 2) == "no pattern"
    assert mechanism_kind(None, None, F_COPY, 2) == "no pattern"
    assert mechanism_kind(None, 0, F_COPY, 2) == "no pattern"         # no persistent mode: nothing compressed
    assert mechanism_kind(np.zeros((4, 4)), 0, F_COPY, 2) == "other"
    assert mechanism_kind(flipped, None, F_COPY, 2) == "other"
    # a task with transients: Φ has 2 persistent modes, not s*d = 4
    assert mechanism_kind(PHI_TRANSIENT, 2, F_TRANSIENT, 2) == "exact"
    assert mechanism_kind(PHI_TRANSIENT, 1, F_TRANSIENT, 2) == "compressed"
    assert mechanism_kind(PHI_COPY, 2, F_TRANSIENT, 2) == "other"    # entries on the transient coordinates


def test_summary_counts_and_text():
    s = mechanism_summary(["exact", "compressed", "exact", "other", "no pattern"])
    assert (s["n"], s["exact"], s["compressed"], s["other"], s["no_pattern"]) == (5, 2, 1, 1, 1)
    assert s["text"] == "2/5 exact, 1 compressed, 1 other, 1 no pattern"
    assert mechanism_summary(["exact", "exact"])["text"] == "2/2 exact, 0 compressed"
    assert mechanism_summary([])["text"] == "0/0 exact, 0 compressed"
    with pytest.raises(ValueError, match="unknown"):
        mechanism_summary(["wave"])


def test_plot_mechanism_agreement(tmp_path):
    A = np.array([[1.0, np.nan], [np.nan, np.nan]])
    fig = plot_mechanism_agreement({"one\n1/2 exact": (A, [3, 7], ["exact", "no pattern"]),
                                    "two": (np.eye(3), [1, 2, 4], ["other"] * 3)}, tmp_path / "m.png")
    first, second, bar = fig.axes
    image = first.get_images()[0].get_array()
    assert image.mask.tolist() == [[False, True], [True, True]] and image[0, 0] == 1.0
    assert [t.get_text() for t in first.get_xticklabels()] == ["3\ne", "7\nn"]
    assert first.get_title() == "one\n1/2 exact" and second.get_images()[0].get_array().shape == (3, 3)
    assert bar.get_ylabel() == "sign-pattern agreement"
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="no configurations"):
        plot_mechanism_agreement({})
